fn main() {
    let p = netpol_synth::Params::preset("10k").unwrap();
    let mut yaml = netpol_synth::generate_yaml(&p);
    if std::env::args().nth(1).as_deref() == Some("admin") {
        yaml.push_str(&netpol_synth::generate_admin_yaml(p.namespaces / 3, 200, 20));
    }
    let mut l = netpol_core::load::Loader::new();
    l.add_bytes("s.yaml", yaml.as_bytes());
    let e = netpol_core::compile::Engine::new(l.finish().cluster);
    let t = std::time::Instant::now();
    let mut m = e.matrix(None).unwrap();
    let c = m.pair_counts(&e);
    eprintln!("matrix {:?} {}", t.elapsed(), c.len());
}
