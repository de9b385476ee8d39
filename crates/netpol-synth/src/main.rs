//! `netpol-synth --namespaces N --pods N --policies N [--seed S] [--admin N] [--baseline N]` (or `--preset
//! 1k|10k|50k|100k`): writes a synthetic multi-tenant cluster as multi-document YAML to stdout, with N
//! Admin-tier and N Baseline-tier ClusterNetworkPolicies when asked.

#![forbid(unsafe_code)]

use std::io::Write;
use std::process::ExitCode;

use netpol_synth::{generate_admin_yaml, generate_yaml, Params};

const USAGE: &str =
    "usage: netpol-synth [--preset 1k|10k|50k|100k] [--namespaces N] [--pods N] [--policies N] [--seed S]
                    [--admin N] [--baseline N]
Writes Namespaces, Pods and NetworkPolicies (and with --admin/--baseline, ClusterNetworkPolicies of those
tiers) as multi-document YAML to stdout.
Defaults: the 1k preset (100 tenant namespaces, 1000 pods, 400 policies), seed 1.";

fn parse(args: &[String]) -> Result<(Params, usize, usize), String> {
    let mut p = Params::new(100, 1_000, 400);
    let (mut admin, mut baseline) = (0, 0);
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let (flag, inline) = match flag.split_once('=') {
            Some((f, v)) => (f, Some(v.to_string())),
            None => (flag.as_str(), None),
        };
        if flag == "-h" || flag == "--help" {
            return Err(String::new());
        }
        let value = match inline {
            Some(v) => v,
            None => it.next().cloned().ok_or_else(|| format!("{flag} needs a value"))?,
        };
        let num = |v: &str| v.parse::<u64>().map_err(|e| format!("{flag}: invalid number `{v}`: {e}"));
        match flag {
            "--preset" => {
                let seed = p.seed;
                p = Params::preset(&value).ok_or_else(|| format!("unknown preset `{value}` (1k, 10k, 50k, 100k)"))?;
                p.seed = seed;
            }
            "--namespaces" => p.namespaces = num(&value)? as usize,
            "--pods" => p.pods = num(&value)? as usize,
            "--policies" => p.policies = num(&value)? as usize,
            "--seed" => p.seed = num(&value)?,
            "--admin" => admin = num(&value)? as usize,
            "--baseline" => baseline = num(&value)? as usize,
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok((p, admin, baseline))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (p, admin, baseline) = match parse(&args) {
        Ok(p) => p,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("netpol-synth: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut yaml = generate_yaml(&p);
    if admin + baseline > 0 {
        yaml.push_str(&generate_admin_yaml(p.namespaces / 3, admin, baseline));
    }
    let mut out = std::io::stdout().lock();
    match out.write_all(yaml.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        // A closed pipe (`| head`) is not an error worth reporting.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("netpol-synth: writing output: {e}");
            ExitCode::FAILURE
        }
    }
}
