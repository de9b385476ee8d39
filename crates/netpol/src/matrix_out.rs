//! `netpol matrix` output: table (pods with identical rows / columns grouped), csv, json, summary.
//!
//! A pod's traffic to itself is always allowed (it never leaves the pod); csv/json show it as allowed,
//! table rows/columns and summary counts consider only pairs of distinct pods.
//!
//! Cells are L3/L4 answers. Where Cilium's L7 rules (HTTP, DNS) further filter the requests on allowed ports,
//! every format but csv says so: table and summary in a section of their own, json in `l7_filtered`.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io::Write;

use indicatif::{ProgressBar, ProgressStyle};
use netpol_core::compile::{Engine, IdentityId};
use netpol_core::matrix::{summarize, Matrix, PortSets, PsId};
use netpol_core::model::{Direction, PodId};
use netpol_core::portset::{PortSet, Protocol};
use rustc_hash::FxHashMap;

use crate::MatrixFormat;

/// What a cell shows: the port-set id (whole port space) or a bitmask over the requested ports.
fn projector(ports: &[(u16, Protocol)]) -> impl Fn(&PortSets, PsId) -> u64 + '_ {
    move |ps: &PortSets, c: PsId| {
        if ports.is_empty() {
            c.index() as u64
        } else {
            let s = ps.get(c);
            ports.iter().enumerate().fold(
                0u64,
                |m, (i, &(p, proto))| {
                    if s.contains(proto, p) {
                        m | (1 << i)
                    } else {
                        m
                    }
                },
            )
        }
    }
}

fn progress(total: usize, what: &str) -> ProgressBar {
    // Only worth a bar for long runs; indicatif draws nothing when stderr is not a terminal.
    if total < 5_000 {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(total as u64);
    if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({eta})") {
        pb.set_style(style);
    }
    pb.set_message(what.to_string());
    pb
}

/// Renders a projected cell value.
type CellText = Box<dyn Fn(u64) -> String>;

fn port_label(p: u16, proto: Protocol) -> String {
    format!("{p}/{proto}")
}

pub fn run(
    e: &Engine,
    ports: &[(u16, Protocol)],
    ns: Option<&str>,
    fmt: MatrixFormat,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    if ports.len() > 64 {
        anyhow::bail!("at most 64 --port values");
    }
    let t = std::time::Instant::now();
    let mut m = e.matrix(ns).map_err(anyhow::Error::msg)?;
    tracing::info!(
        elapsed = ?t.elapsed(),
        src_classes = m.src_classes.len(),
        dst_classes = m.dst_classes.len(),
        stored = m.is_stored(),
        "matrix computed"
    );
    match fmt {
        MatrixFormat::Summary => summary(e, &mut m, ports, out),
        MatrixFormat::Table => table(e, &mut m, ports, out),
        MatrixFormat::Csv | MatrixFormat::Json => pairs(e, &mut m, ports, ns, fmt, out),
    }
}

/// The identity pairs of the matrix (distinct pods) with allowed ports whose requests Cilium's L7 proxies filter,
/// and those ports: only identities whose own rules carry L7 rules are asked.
fn l7_pairs(e: &Engine, m: &Matrix) -> Vec<(IdentityId, IdentityId, PortSet)> {
    let mut pairs = std::collections::BTreeSet::new();
    for &i in &m.identities {
        if e.has_l7_rules(i, Direction::Egress) {
            pairs.extend(m.identities.iter().map(|&d| (i, d)));
        }
        if e.has_l7_rules(i, Direction::Ingress) {
            pairs.extend(m.identities.iter().map(|&s| (s, i)));
        }
    }
    pairs
        .into_iter()
        .filter(|&(s, d)| s != d || e.identity(s).pods.len() > 1)
        .map(|(s, d)| (s, d, e.l7_filtered_ports(s, d)))
        .filter(|(_, _, p)| !p.is_empty())
        .collect()
}

fn summary(e: &Engine, m: &mut Matrix, ports: &[(u16, Protocol)], out: &mut dyn Write) -> anyhow::Result<()> {
    let pb = progress(m.dst_classes.len(), "matrix");
    let counts = m.pair_counts_with_progress(e, &mut |done| pb.set_position(done as u64));
    pb.finish_and_clear();
    let rows = summarize(&counts, &m.port_sets, (!ports.is_empty()).then_some(ports));
    let pods: u64 = m.identities.iter().map(|&i| e.identity(i).pods.len() as u64).sum();
    writeln!(out, "pods: {pods}, ordered pairs of distinct pods: {}", pods * pods.saturating_sub(1))?;
    writeln!(out, "{:<20} {:>14} {:>14}", "PORT", "ALLOWED", "DENIED")?;
    for r in rows {
        let label =
            if r.from == r.to { port_label(r.from, r.protocol) } else { format!("{}-{}/{}", r.from, r.to, r.protocol) };
        writeln!(out, "{label:<20} {:>14} {:>14}", r.allowed, r.denied)?;
    }
    let l7 = l7_pairs(e, m);
    if !l7.is_empty() {
        let pairs: u64 = l7
            .iter()
            .map(|(s, d, _)| {
                let (a, b) = (e.identity(*s).pods.len() as u64, e.identity(*d).pods.len() as u64);
                if s == d {
                    a * (a - 1)
                } else {
                    a * b
                }
            })
            .sum();
        writeln!(
            out,
            "L7: on {pairs} ordered pod pairs, Cilium's HTTP/DNS rules further filter the requests on some allowed \
             ports (the counts above are connections; `netpol query` with `http`/`dns` judges a request)"
        )?;
    }
    Ok(())
}

fn pod_names(e: &Engine, ids: &[IdentityId]) -> Vec<String> {
    let mut v: Vec<String> =
        ids.iter().flat_map(|&i| e.identity(i).pods.iter().map(|&p| e.cluster().pod_ref(p))).collect();
    v.sort();
    v
}

fn members_text(names: &[String]) -> String {
    const SHOW: usize = 4;
    let shown = names.iter().take(SHOW).cloned().collect::<Vec<_>>().join(", ");
    if names.len() > SHOW {
        format!("{shown} (+{} more)", names.len() - SHOW)
    } else {
        shown
    }
}

fn table(e: &Engine, m: &mut Matrix, ports: &[(u16, Protocol)], out: &mut dyn Write) -> anyhow::Result<()> {
    let proj = projector(ports);
    let n_src = m.src_classes.len();
    // Pass 1: hash rows and columns of projected values; equal hashes = equal rows/columns.
    let mut row_h: Vec<u64> = vec![0xcbf2_9ce4_8422_2325; n_src];
    let mut col_h: Vec<u64> = Vec::with_capacity(m.dst_classes.len());
    let pb = progress(m.dst_classes.len(), "matrix");
    m.for_each_column(e, |_, col, ps| {
        let mut h = DefaultHasher::new();
        for (s, &c) in col.iter().enumerate() {
            let v = proj(ps, c);
            v.hash(&mut h);
            row_h[s] = (row_h[s] ^ v.wrapping_add(0x9e37_79b9_7f4a_7c15)).wrapping_mul(0x0100_0000_01b3);
        }
        col_h.push(h.finish());
        pb.inc(1);
    });
    pb.finish_and_clear();
    let group = |hs: &[u64]| -> Vec<Vec<usize>> {
        let mut idx: FxHashMap<u64, usize> = FxHashMap::default();
        let mut groups: Vec<Vec<usize>> = Vec::new();
        for (i, h) in hs.iter().enumerate() {
            let g = *idx.entry(*h).or_insert_with(|| {
                groups.push(Vec::new());
                groups.len() - 1
            });
            groups[g].push(i);
        }
        groups
    };
    let row_groups = group(&row_h);
    let col_groups = group(&col_h);
    // Pass 2: representative values.
    let rep_col: FxHashMap<usize, usize> = col_groups.iter().enumerate().map(|(g, v)| (v[0], g)).collect();
    let mut values: Vec<Vec<u64>> = vec![vec![0; col_groups.len()]; row_groups.len()];
    m.for_each_column(e, |d, col, ps| {
        if let Some(&g) = rep_col.get(&d) {
            for (r, members) in row_groups.iter().enumerate() {
                values[r][g] = proj(ps, col[members[0]]);
            }
        }
    });
    let row_names: Vec<Vec<String>> = row_groups
        .iter()
        .map(|g| pod_names(e, &g.iter().flat_map(|&s| m.src_classes[s].iter().copied()).collect::<Vec<_>>()))
        .collect();
    let col_names: Vec<Vec<String>> = col_groups
        .iter()
        .map(|g| pod_names(e, &g.iter().flat_map(|&d| m.dst_classes[d].iter().copied()).collect::<Vec<_>>()))
        .collect();
    // Order groups by their first pod name for stable output.
    let mut row_order: Vec<usize> = (0..row_groups.len()).collect();
    row_order.sort_by(|&a, &b| row_names[a].first().cmp(&row_names[b].first()));
    let mut col_order: Vec<usize> = (0..col_groups.len()).collect();
    col_order.sort_by(|&a, &b| col_names[a].first().cmp(&col_names[b].first()));

    writeln!(out, "Sources (rows; pods with identical outgoing connectivity are grouped):")?;
    for (i, &r) in row_order.iter().enumerate() {
        writeln!(out, "  R{:<3} {} pod(s): {}", i + 1, row_names[r].len(), members_text(&row_names[r]))?;
    }
    writeln!(out, "Destinations (columns; pods with identical incoming connectivity are grouped):")?;
    for (i, &c) in col_order.iter().enumerate() {
        writeln!(out, "  C{:<3} {} pod(s): {}", i + 1, col_names[c].len(), members_text(&col_names[c]))?;
    }
    let grids: Vec<(String, CellText)> = if ports.is_empty() {
        let sets: Vec<String> = (0..m.port_sets.len()).map(|c| m.port_sets.get(PsId::new(c)).to_string()).collect();
        vec![("allowed ports (whole port space)".to_string(), Box::new(move |v| sets[v as usize].clone()))]
    } else {
        ports
            .iter()
            .enumerate()
            .map(|(i, &(p, proto))| {
                let f: CellText =
                    Box::new(move |v| if v & (1 << i) != 0 { "allow".to_string() } else { "-".to_string() });
                (port_label(p, proto), f)
            })
            .collect()
    };
    for (title, cell) in grids {
        writeln!(out, "\n{title}:")?;
        let texts: Vec<Vec<String>> =
            row_order.iter().map(|&r| col_order.iter().map(|&c| cell(values[r][c])).collect()).collect();
        let mut widths: Vec<usize> = (0..col_order.len()).map(|c| format!("C{}", c + 1).len()).collect();
        for row in &texts {
            for (c, t) in row.iter().enumerate() {
                widths[c] = widths[c].max(t.len());
            }
        }
        let mut line = format!("{:<6}", "");
        for (c, w) in widths.iter().enumerate() {
            line.push_str(&format!("  {:<w$}", format!("C{}", c + 1)));
        }
        writeln!(out, "{}", line.trim_end())?;
        for (r, row) in texts.iter().enumerate() {
            let mut line = format!("{:<6}", format!("R{}", r + 1));
            for (c, t) in row.iter().enumerate() {
                line.push_str(&format!("  {:<w$}", t, w = widths[c]));
            }
            writeln!(out, "{}", line.trim_end())?;
        }
    }
    // L7: the cells whose requests Cilium's proxies filter, by group.
    let l7 = l7_pairs(e, m);
    if !l7.is_empty() {
        let row_of: FxHashMap<usize, usize> =
            row_order.iter().enumerate().flat_map(|(i, &r)| row_groups[r].iter().map(move |&c| (c, i))).collect();
        let col_of: FxHashMap<usize, usize> =
            col_order.iter().enumerate().flat_map(|(i, &g)| col_groups[g].iter().map(move |&c| (c, i))).collect();
        let mut cells: std::collections::BTreeMap<(usize, usize), PortSet> = std::collections::BTreeMap::new();
        for (s, d, ports) in &l7 {
            let (Some(&sc), Some(&dc)) = (m.src_class_of.get(s), m.dst_class_of.get(d)) else { continue };
            let (Some(&r), Some(&c)) = (row_of.get(&(sc as usize)), col_of.get(&(dc as usize))) else { continue };
            cells.entry((r, c)).or_insert_with(PortSet::empty).union_with(ports);
        }
        writeln!(out, "\nL7 (Cilium's proxies filter the requests on these allowed ports; `netpol query`/`explain` with `http` or `dns` judges one):")?;
        for ((r, c), ports) in cells {
            writeln!(out, "  R{} -> C{}: {ports}", r + 1, c + 1)?;
        }
    }
    Ok(())
}

fn pairs(
    e: &Engine,
    m: &mut Matrix,
    ports: &[(u16, Protocol)],
    ns: Option<&str>,
    fmt: MatrixFormat,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    if !m.is_stored() {
        anyhow::bail!("the matrix is too large for per-pod csv/json output; use -o summary or -o table");
    }
    let pods: Vec<PodId> = e
        .sorted_pods()
        .into_iter()
        .filter(|&p| ns.is_none_or(|n| e.cluster().ns_name(e.cluster().pod(p).ns) == n))
        .collect();
    let names: Vec<String> = pods.iter().map(|&p| e.cluster().pod_ref(p)).collect();
    let cell = |a: PodId, b: PodId| m.pod_cell(e, a, b).unwrap_or(PsId::new(0));
    if fmt == MatrixFormat::Csv {
        write!(out, "source,destination")?;
        if ports.is_empty() {
            write!(out, ",allowed")?;
        }
        for &(p, proto) in ports {
            write!(out, ",{}", port_label(p, proto))?;
        }
        writeln!(out)?;
        let pb = progress(pods.len(), "matrix");
        for (i, &a) in pods.iter().enumerate() {
            for (j, &b) in pods.iter().enumerate() {
                let set = m.port_sets.get(cell(a, b));
                write!(out, "{},{}", names[i], names[j])?;
                if ports.is_empty() {
                    write!(out, ",{set}")?;
                }
                for &(p, proto) in ports {
                    write!(out, ",{}", if set.contains(proto, p) { "allow" } else { "deny" })?;
                }
                writeln!(out)?;
            }
            pb.inc(1);
        }
        pb.finish_and_clear();
        return Ok(());
    }
    // JSON: the pod list, then per port a row per source pod (one boolean per destination pod), or, over the
    // whole port space, the allowed port sets as text.
    let mut doc = serde_json::Map::new();
    doc.insert("cni".into(), netpol_input::cni_json(e));
    doc.insert("pods".into(), serde_json::to_value(&names)?);
    if ports.is_empty() {
        let rows: Vec<Vec<String>> =
            pods.iter().map(|&a| pods.iter().map(|&b| m.port_sets.get(cell(a, b)).to_string()).collect()).collect();
        doc.insert("allowed".into(), serde_json::to_value(rows)?);
    } else {
        let mut per_port = Vec::new();
        for &(p, proto) in ports {
            let rows: Vec<Vec<bool>> = pods
                .iter()
                .map(|&a| pods.iter().map(|&b| m.port_sets.get(cell(a, b)).contains(proto, p)).collect())
                .collect();
            per_port.push(serde_json::json!({"port": p, "protocol": proto, "rows": rows}));
        }
        doc.insert("ports".into(), serde_json::Value::Array(per_port));
    }
    // Cilium: the pod pairs whose requests L7 rules filter on some allowed ports.
    let listed: FxHashMap<PodId, usize> = pods.iter().enumerate().map(|(i, &p)| (p, i)).collect();
    let mut l7 = Vec::new();
    for (s, d, ports) in l7_pairs(e, m) {
        for a in e.identity(s).pods.iter().filter_map(|p| listed.get(p)) {
            for b in e.identity(d).pods.iter().filter_map(|p| listed.get(p)) {
                if a != b {
                    l7.push(serde_json::json!({"src": names[*a], "dst": names[*b], "ports": ports.to_string()}));
                }
            }
        }
    }
    if !l7.is_empty() {
        doc.insert("l7_filtered".into(), serde_json::Value::Array(l7));
    }
    serde_json::to_writer(&mut *out, &doc)?;
    writeln!(out)?;
    Ok(())
}
