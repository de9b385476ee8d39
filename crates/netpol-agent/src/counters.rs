//! Drops per rule: the packet counters of the drop rules of the agent's table (every rule of
//! `netpol_nft::ruleset` has a `counter`), read at scrape time with `nft -j -t list table inet netpol` (`-t`: the
//! sets' and maps' elements left out, so the work is bounded by the number of rules, not of addresses) and
//! exposed as `netpol_agent_drops_total{policy, direction, rule}` — in audit mode, where the same rules log and
//! let the packet go on, as `netpol_agent_audit_drops_total` (what would have been dropped).
//!
//! Labels, from the rule's comment (shortened ones expanded through the ruleset's `long_comments`):
//! - a deny (or reject) rule, `np:<policy_ref>/<direction>/<index> <tag>`: `policy` its policy reference
//!   (`ns/name`, `cnp/name`, ...), `direction`, `rule` its index (the nft rules of one policy rule — one per peer
//!   and port — are summed);
//! - a tier's default deny, `np-drop:<direction> ns/a,ns/b`: `policy` the policies that isolate (comma-separated),
//!   `direction`, `rule="default"`;
//! - the node's own checks, `np-drop:unknown-local-pod`, `np-drop:encapsulation`, `np-drop:invalid`, a host
//!   endpoint's end (`np-drop:host ...`): `policy=""`, `direction=""`, `rule` what the check is.
//!
//! A counter restarts from zero when the agent replaces the chain holding its rule (a changed policy), as
//! Prometheus counters may.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;

use crate::Programmer;

/// The packets one drop rule (or several, summed) of the table counted.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct DropCount {
    pub policy: String,
    pub direction: String,
    pub rule: String,
    /// Audit mode: the rule logged and let through what it would have dropped.
    pub audit: bool,
    pub packets: u64,
}

/// How a rule of `nft -j` ends: `Some(false)` it drops or rejects, `Some(true)` it is an audit rule (logs with the
/// prefix `netpol-audit` and lets the packet go on: `return`, or no verdict in a base chain; an older agent's
/// accepted), `None` anything else.
fn drops(exprs: &[Value]) -> Option<bool> {
    let last = exprs.last()?;
    if last.get("drop").is_some() || last.get("reject").is_some() {
        return Some(false);
    }
    if last.pointer("/goto/target").and_then(Value::as_str) == Some(netpol_nft::ruleset::REJECT_CHAIN) {
        return Some(false);
    }
    let audit = exprs
        .iter()
        .any(|e| e.pointer("/log/prefix").and_then(Value::as_str).is_some_and(|p| p.starts_with("netpol-audit ")));
    audit.then_some(true)
}

/// The labels of a drop rule's comment: (policy, direction, rule).
fn labels(comment: &str) -> (String, String, String) {
    if let Some((path, _)) = netpol_nft::ruleset::parse_comment(comment) {
        if let Some((rest, index)) = path.rsplit_once('/') {
            if let Some((policy, dir)) = rest.rsplit_once('/') {
                return (policy.to_string(), dir.to_string(), index.to_string());
            }
        }
        return (path.to_string(), String::new(), String::new());
    }
    if let Some(rest) = comment.strip_prefix("np-drop:") {
        if let Some((dir @ ("ingress" | "egress"), policies)) = rest.split_once(' ') {
            return (policies.to_string(), dir.to_string(), "default".to_string());
        }
        return (String::new(), String::new(), rest.to_string());
    }
    (String::new(), String::new(), comment.to_string())
}

/// The drop rules' counters of `nft -j list table inet netpol` (`json`), summed per (policy, direction, rule,
/// audit) and sorted; shortened comments expanded through `long`. Rules without a comment or a counter are left
/// out.
pub fn parse(json: &str, long: &BTreeMap<String, String>) -> Result<Vec<DropCount>, String> {
    let v: Value = serde_json::from_str(json).map_err(|e| format!("nft -j: {e}"))?;
    let items = v.get("nftables").and_then(Value::as_array).ok_or("nft -j: no `nftables` list")?;
    let mut sums: BTreeMap<(String, String, String, bool), u64> = BTreeMap::new();
    for item in items {
        let Some(rule) = item.get("rule") else { continue };
        if rule.get("table").and_then(Value::as_str).is_some_and(|t| t != netpol_nft::ruleset::TABLE) {
            continue;
        }
        let Some(exprs) = rule.get("expr").and_then(Value::as_array) else { continue };
        let Some(audit) = drops(exprs) else { continue };
        let Some(comment) = rule.get("comment").and_then(Value::as_str) else { continue };
        let Some(packets) = exprs.iter().find_map(|e| e.pointer("/counter/packets").and_then(Value::as_u64)) else {
            continue;
        };
        let (policy, direction, index) = labels(netpol_nft::ruleset::expand_comment(comment, long));
        *sums.entry((policy, direction, index, audit)).or_default() += packets;
    }
    Ok(sums
        .into_iter()
        .map(|((policy, direction, rule, audit), packets)| DropCount { policy, direction, rule, audit, packets })
        .collect())
}

/// A Prometheus label value: backslash, double quote and newline escaped.
pub fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Appends `netpol_agent_drops_total` and `netpol_agent_audit_drops_total` in Prometheus's text format.
pub fn write(counts: &[DropCount], s: &mut String) {
    for (audit, name, help) in [
        (false, "netpol_agent_drops_total", "Packets the node's ruleset dropped or rejected, per rule."),
        (
            true,
            "netpol_agent_audit_drops_total",
            "Packets audit mode let through that a rule would have dropped, per rule.",
        ),
    ] {
        let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} counter");
        for c in counts.iter().filter(|c| c.audit == audit) {
            let _ = writeln!(
                s,
                "{name}{{policy=\"{}\",direction=\"{}\",rule=\"{}\"}} {}",
                escape_label(&c.policy),
                escape_label(&c.direction),
                escape_label(&c.rule),
                c.packets
            );
        }
    }
}

impl Programmer {
    /// The drop rules' counters of the table the kernel holds (`nft -j -t list table inet netpol` where the agent
    /// programs).
    pub fn drop_counts(&self) -> Result<Vec<DropCount>, String> {
        let argv = ["nft", "-j", "-t", "list", "table", "inet", netpol_nft::ruleset::TABLE];
        let out = self.runner.run(&self.in_ns(&argv), None).map_err(|e| e.to_string())?;
        parse(&out, &self.long_comments())
    }
}

/// How long a reading of the counters answers scrapes: however often `/metrics` is asked, `nft` lists the table
/// at most once in this time (a scrape storm must not compete with programs for the node's CPU).
pub const READ_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Appends the drops per rule of `programmer`'s table (nothing but the metrics' headers when none is programmed
/// yet or the table cannot be read), from a reading at most [`READ_EVERY`] old.
pub fn write_drops(programmer: &Programmer, s: &mut String) {
    let counts = if programmer.metrics.generation.load(std::sync::atomic::Ordering::Relaxed) == 0 {
        Vec::new()
    } else {
        let mut cache = programmer.drops_read.lock().unwrap_or_else(|e| e.into_inner());
        match cache.as_ref() {
            Some((at, counts)) if at.elapsed() < READ_EVERY => counts.clone(),
            _ => {
                let counts = programmer.drop_counts().unwrap_or_else(|e| {
                    tracing::debug!("cannot read the drop counters: {e}");
                    Vec::new()
                });
                *cache = Some((std::time::Instant::now(), counts.clone()));
                counts
            }
        }
    };
    write(&counts, s);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// `nft -j -t list table inet netpol` (nftables 1.0.6) of a table with every kind of drop rule: a deny rule
    /// split over two peers, a reject, a shortened comment, a tier's default deny, an invalid packet's drop, and the
    /// audit rules of audit mode (counters set when loaded: 1, 2, ... in rule order).
    const CAPTURED: &str = include_str!("testdata/nft-j-t-list-table.json");

    #[test]
    fn the_drop_rules_counters_are_summed_per_policy_rule() {
        let long: BTreeMap<String, String> =
            [("np:#0123456789abcdef".to_string(), "np:n/a-very-long-name/ingress/3 peer-0".to_string())].into();
        let counts = parse(CAPTURED, &long).unwrap();
        let got: Vec<(&str, &str, &str, bool, u64)> = counts
            .iter()
            .map(|c| (c.policy.as_str(), c.direction.as_str(), c.rule.as_str(), c.audit, c.packets))
            .collect();
        assert_eq!(
            got,
            [
                ("", "", "invalid", false, 1),
                ("", "", "unknown-local-pod", true, 10),
                // The pass (2) and the allow (7) are no drops; a rule's nft rules are summed (3 + 4).
                ("acnp/rej", "ingress", "0", false, 5),
                ("cnp/admin-deny", "ingress", "1", false, 7),
                ("cnp/baseline-deny", "ingress", "0", true, 9),
                ("n/a-very-long-name", "ingress", "3", false, 6),
                ("n/b-from-c,n/other", "ingress", "default", false, 8),
            ]
        );
        let mut s = String::new();
        write(&counts, &mut s);
        assert!(s.contains("# TYPE netpol_agent_drops_total counter\n"), "{s}");
        assert!(
            s.contains("netpol_agent_drops_total{policy=\"cnp/admin-deny\",direction=\"ingress\",rule=\"1\"} 7\n"),
            "{s}"
        );
        assert!(
            s.contains(
                "netpol_agent_audit_drops_total{policy=\"cnp/baseline-deny\",direction=\"ingress\",rule=\"0\"} 9\n"
            ),
            "{s}"
        );
        assert!(!s.contains("netpol_agent_drops_total{policy=\"cnp/baseline-deny\""), "{s}");
        assert!(parse("not json", &long).is_err());
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        let c = DropCount {
            policy: "n/\"x\"".into(),
            direction: "ingress".into(),
            rule: "0".into(),
            audit: false,
            packets: 2,
        };
        let mut s = String::new();
        write(&[c], &mut s);
        assert!(s.contains("{policy=\"n/\\\"x\\\"\",direction=\"ingress\",rule=\"0\"} 2"), "{s}");
    }

    /// The metrics endpoint reads the counters where the agent programs, once a ruleset is programmed.
    #[test]
    fn the_metrics_endpoint_serves_the_drops_per_rule() {
        use netpol_nft::apply::{ApplyError, Runner};
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Nft(Arc<Mutex<Vec<String>>>);
        impl Runner for Nft {
            fn run(&self, argv: &[&str], _stdin: Option<&str>) -> Result<String, ApplyError> {
                self.0.lock().unwrap().push(argv.join(" "));
                Ok(if argv.contains(&"-t") { CAPTURED.to_string() } else { String::new() })
            }
        }
        let nft = Nft::default();
        let p = Programmer::new("n1", crate::Mode::Enforce, Box::new(nft.clone()), Some("lab-node0".into()));
        let before = crate::http_answer("GET /metrics HTTP/1.1", &p, None);
        assert!(before.contains("# TYPE netpol_agent_drops_total counter") && !before.contains("drops_total{"));
        let yaml = "apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: n}\nspec: {nodeName: n1}\nstatus: {podIP: 10.0.0.1}\n";
        p.program(&netpol_core::compile::Engine::new(netpol_core::load::load_str("c.yaml", yaml).cluster)).unwrap();
        let m = crate::http_answer("GET /metrics HTTP/1.1", &p, None);
        assert!(
            m.contains(
                "netpol_agent_drops_total{policy=\"n/b-from-c,n/other\",direction=\"ingress\",rule=\"default\"} 8"
            ),
            "{m}"
        );
        let calls = nft.0.lock().unwrap().clone();
        assert!(calls.contains(&"ip netns exec lab-node0 nft -j -t list table inet netpol".to_string()), "{calls:?}");
    }
}
