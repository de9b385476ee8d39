//! `netpol-synth --namespaces N --pods N --policies N [--seed S] [--admin N] [--baseline N] [--calico N
//! [--calico-cidrs N] | --cilium N [--ccnp N] [--http-rules N] | --antrea N [--antrea-groups N]]` (or `--preset
//! 1k|10k|50k|100k`): writes a
//! synthetic multi-tenant cluster as multi-document YAML to stdout, with N Admin-tier and N Baseline-tier
//! ClusterNetworkPolicies when asked; with `--calico`, service accounts, 5 Calico Tiers, network sets and N Calico
//! policies; with `--cilium`, service accounts, Nodes, the API server's EndpointSlice, N CiliumNetworkPolicies and
//! CiliumClusterwideNetworkPolicies; with `--antrea`, service accounts, Nodes, 2 Antrea Tiers, ClusterGroups and N
//! Antrea policies.

#![forbid(unsafe_code)]

use std::io::Write;
use std::process::ExitCode;

use netpol_synth::{
    generate_admin_yaml, generate_antrea_yaml, generate_calico_yaml, generate_cilium_yaml, generate_yaml, Params,
};

const USAGE: &str =
    "usage: netpol-synth [--preset 1k|10k|50k|100k] [--namespaces N] [--pods N] [--policies N] [--seed S]
                    [--admin N] [--baseline N] [--calico N [--calico-cidrs N] | --cilium N [--ccnp N] [--http-rules N]
                    | --antrea N [--antrea-groups N]]
Writes Namespaces, Pods and NetworkPolicies (and with --admin/--baseline, ClusterNetworkPolicies of those
tiers) as multi-document YAML to stdout.
--calico N: the Calico variant: workloads with service accounts (and their ServiceAccounts), 5 Calico Tiers,
NetworkSets and GlobalNetworkSets holding --calico-cidrs CIDRs (default 10000), and N projectcalico.org/v3
NetworkPolicies and GlobalNetworkPolicies (the issue's benchmark: --preset 10k --calico 2000).
--cilium N: the Cilium variant: workloads with service accounts (and their ServiceAccounts) and nodes, the Nodes,
the default/kubernetes Service and EndpointSlice, N cilium.io/v2 CiliumNetworkPolicies and --ccnp
CiliumClusterwideNetworkPolicies (default 50) holding --http-rules HTTP rules in all (default 200).
--antrea N: the Antrea variant: workloads with service accounts and nodes, the Nodes, 2 custom Tiers,
--antrea-groups ClusterGroups (default 200) and N crd.antrea.io/v1beta1 policies, a fifth ClusterNetworkPolicies
(the issue's benchmark: --preset 10k --antrea 1000).
Defaults: the 1k preset (100 tenant namespaces, 1000 pods, 400 policies), seed 1.";

/// What to write besides the cluster.
struct Extra {
    admin: usize,
    baseline: usize,
    /// Calico policies; `None`: not the Calico variant.
    calico: Option<usize>,
    calico_cidrs: usize,
    /// CiliumNetworkPolicies; `None`: not the Cilium variant.
    cilium: Option<usize>,
    ccnps: usize,
    http_rules: usize,
    /// Antrea policies; `None`: not the Antrea variant.
    antrea: Option<usize>,
    antrea_groups: usize,
}

fn parse(args: &[String]) -> Result<(Params, Extra), String> {
    let mut p = Params::new(100, 1_000, 400);
    let mut x = Extra {
        admin: 0,
        baseline: 0,
        calico: None,
        calico_cidrs: 10_000,
        cilium: None,
        ccnps: 50,
        http_rules: 200,
        antrea: None,
        antrea_groups: 200,
    };
    let mut cidrs_given = false;
    let mut cilium_given = false;
    let mut groups_given = false;
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
            "--admin" => x.admin = num(&value)? as usize,
            "--baseline" => x.baseline = num(&value)? as usize,
            "--calico" => x.calico = Some(num(&value)? as usize),
            "--calico-cidrs" => {
                x.calico_cidrs = num(&value)? as usize;
                cidrs_given = true;
            }
            "--cilium" => x.cilium = Some(num(&value)? as usize),
            "--ccnp" => {
                x.ccnps = num(&value)? as usize;
                cilium_given = true;
            }
            "--http-rules" => {
                x.http_rules = num(&value)? as usize;
                cilium_given = true;
            }
            "--antrea" => x.antrea = Some(num(&value)? as usize),
            "--antrea-groups" => {
                x.antrea_groups = num(&value)? as usize;
                groups_given = true;
            }
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    if cidrs_given && x.calico.is_none() {
        return Err("--calico-cidrs needs --calico".into());
    }
    if cilium_given && x.cilium.is_none() {
        return Err("--ccnp and --http-rules need --cilium".into());
    }
    if groups_given && x.antrea.is_none() {
        return Err("--antrea-groups needs --antrea".into());
    }
    if [x.calico.is_some(), x.cilium.is_some(), x.antrea.is_some()].into_iter().filter(|&v| v).count() > 1 {
        return Err("--calico, --cilium and --antrea are different variants: give one".into());
    }
    Ok((p, x))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (p, x) = match parse(&args) {
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
    let mut yaml = match (x.calico, x.cilium, x.antrea) {
        (Some(n), _, _) => generate_calico_yaml(&p, n, x.calico_cidrs),
        (None, Some(n), _) => generate_cilium_yaml(&p, n, x.ccnps, x.http_rules),
        (None, None, Some(n)) => generate_antrea_yaml(&p, n, x.antrea_groups),
        (None, None, None) => generate_yaml(&p),
    };
    if x.admin + x.baseline > 0 {
        yaml.push_str(&generate_admin_yaml(p.namespaces / 3, x.admin, x.baseline));
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
