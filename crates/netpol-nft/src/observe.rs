//! Flow log from the data plane, like Hubble's: every new connection through the node, or to or from the node
//! itself, is traced (`meta nftrace set 1` on `ct state new` in a separate table, after conntrack at priority -150:
//! in prerouting for what arrives from a pod, in output for what the node's host-network pods send), `nft monitor
//! trace` is read, and each trace becomes one record: source, destination, protocol, port, verdict, and the policy
//! rule that allowed each side, or the isolation that dropped it (from the rule comments of the generated ruleset).

use serde::Serialize;

/// The table observe adds while it runs (and removes afterwards).
pub const TRACE_TABLE: &str = "netpol_trace";

/// Script that adds the tracing table. Loopback traffic (between the node's own addresses) is traced once, when
/// it leaves.
pub fn trace_on_script() -> String {
    format!(
        "table inet {TRACE_TABLE}\ndelete table inet {TRACE_TABLE}\ntable inet {TRACE_TABLE} {{\n\tchain pre {{\n\t\ttype filter hook prerouting priority -150; policy accept;\n\t\tiifname != \"lo\" ct state new meta nftrace set 1\n\t}}\n\tchain out {{\n\t\ttype filter hook output priority -150; policy accept;\n\t\tct state new meta nftrace set 1\n\t}}\n}}\n"
    )
}

pub fn trace_off_script() -> String {
    format!("table inet {TRACE_TABLE}\ndelete table inet {TRACE_TABLE}\n")
}

/// One observed flow.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FlowRecord {
    pub src: String,
    pub dst: String,
    pub protocol: String,
    pub port: Option<u16>,
    pub verdict: String,
    /// The rule comments (`np:ns/policy/direction/rule peer`) that allowed, per side.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed_by: Vec<String>,
    /// The isolation that dropped it (`np-drop:ingress ns/p1,ns/p2`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dropped_by: Option<String>,
    /// Every commented rule of the table the packet matched, in the order it met them, with the verdict the trace
    /// gives it (`return`, `accept`, `drop`, `goto CHAIN`, `jump CHAIN`, `continue`): the walk of every tier, a
    /// pass (`goto` the chain of the later tiers) and a log rule (`continue`) included.
    #[serde(skip)]
    pub matched: Vec<MatchedRule>,
}

/// A commented rule a traced packet matched.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MatchedRule {
    /// The rule's comment as the kernel holds it (possibly shortened: see `ruleset::expand_comment`).
    pub comment: String,
    /// The trace's verdict of the rule: `return`, `accept`, `drop`, `goto CHAIN`, `jump CHAIN`, `continue`.
    pub verdict: String,
    /// The rule logs with the prefix `netpol-audit` (`Ruleset::audit`): it lets through what it would have dropped.
    pub audit: bool,
}

/// The `X` of a trace line's `(verdict X)`.
fn verdict_of(line: &str) -> Option<&str> {
    let i = line.rfind("(verdict ")?;
    let rest = &line[i + 9..];
    Some(rest[..rest.find(')')?].trim())
}

/// Accumulates `nft monitor trace` lines and yields a record when a trace reaches its verdict.
#[derive(Default)]
pub struct TraceParser {
    current: std::collections::HashMap<String, FlowRecord>,
}

fn field<'a>(tokens: &'a [&'a str], name: &[&str]) -> Option<&'a str> {
    tokens.windows(name.len() + 1).find(|w| w[..name.len()] == *name).map(|w| w[name.len()])
}

fn comment(line: &str) -> Option<String> {
    let i = line.find("comment \"")?;
    let rest = &line[i + 9..];
    let end = rest.find('"')?;
    Some(rest[..end].to_string())
}

impl TraceParser {
    /// Feeds one line; returns a finished record, if this line finished one.
    pub fn feed(&mut self, line: &str) -> Option<FlowRecord> {
        let tokens: Vec<&str> = line.split_whitespace().collect();
        if tokens.len() < 5 || tokens[0] != "trace" || tokens[1] != "id" {
            return None;
        }
        let id = tokens[2].to_string();
        let table = tokens.get(4).copied().unwrap_or("");
        let rest = &tokens[5..];
        if table == TRACE_TABLE {
            if rest.get(1) == Some(&"packet:") {
                let addr = |k: &str| -> String {
                    field(rest, &["ip", k]).or_else(|| field(rest, &["ip6", k])).unwrap_or("?").to_string()
                };
                let mut r = FlowRecord { src: addr("saddr"), dst: addr("daddr"), ..FlowRecord::default() };
                for proto in ["tcp", "udp", "sctp"] {
                    if let Some(p) = field(rest, &[proto, "dport"]) {
                        r.protocol = proto.to_uppercase();
                        r.port = p.parse().ok();
                    }
                }
                if r.protocol.is_empty() {
                    r.protocol = field(rest, &["meta", "l4proto"]).unwrap_or("other").to_uppercase();
                }
                self.current.insert(id, r);
            }
            return None;
        }
        if table != crate::ruleset::TABLE {
            return None;
        }
        let rec = self.current.get_mut(&id)?;
        if let (Some(c), Some(v)) = (comment(line), verdict_of(line)) {
            let audit = line.contains("prefix \"netpol-audit ");
            rec.matched.push(MatchedRule { comment: c, verdict: v.to_string(), audit });
        }
        if line.contains("(verdict return)") {
            if let Some(c) = comment(line) {
                rec.allowed_by.push(c);
            }
            None
        } else if line.contains("(verdict accept)") {
            // A rule's accept ends the packet's walk of the table.
            let mut r = self.current.remove(&id)?;
            r.allowed_by.extend(comment(line));
            r.verdict = "allow".into();
            Some(r)
        } else if line.contains("(verdict drop)") {
            let mut r = self.current.remove(&id)?;
            r.verdict = "deny".into();
            r.dropped_by = comment(line);
            Some(r)
        } else if rest.get(1) == Some(&"policy")
            && rest.get(2) == Some(&"accept")
            && rest.first().is_some_and(|c| crate::ruleset::BASE_HOOKS.contains(c))
        {
            let mut r = self.current.remove(&id)?;
            r.verdict = "allow".into();
            Some(r)
        } else {
            None
        }
    }
}

/// The handle of the rule a trace line of netpol's table names: `... # handle N (verdict ...)` (`nft -a monitor
/// trace`) or `unknown rule handle N`.
pub fn traced_handle(line: &str) -> Option<u64> {
    let mut t = line.split_whitespace();
    if (t.next(), t.nth(2), t.next()) != (Some("trace"), Some("inet"), Some(crate::ruleset::TABLE)) {
        return None;
    }
    let at = line.find("unknown rule handle ").map(|i| i + 20).or_else(|| line.rfind(" # handle ").map(|i| i + 10))?;
    line.get(at..)?.split_whitespace().next()?.parse().ok()
}

/// A rule of netpol's table as a flow log needs it: its chain, its comment, and whether it is an audit rule (it
/// logs with the prefix `netpol-audit` and lets the packet go on: what tells a would-be drop from an allow).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableRule {
    pub chain: String,
    pub comment: Option<String>,
    pub audit: bool,
}

/// The rules of netpol's table by handle, from `nft -a -j -t list table inet netpol`
/// ([`crate::apply::nft_table_rules`]); empty when the text is not that.
pub fn table_rules_of(json: &str) -> std::collections::HashMap<u64, TableRule> {
    use serde_json::Value;
    let Ok(v) = serde_json::from_str::<Value>(json) else { return Default::default() };
    v["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| {
            let r = item.get("rule")?;
            let audit = r.get("expr").and_then(Value::as_array).into_iter().flatten().any(|e| {
                e.pointer("/log/prefix").and_then(Value::as_str).is_some_and(|p| p.starts_with("netpol-audit "))
            });
            let comment = r.get("comment").and_then(Value::as_str).map(str::to_string);
            let chain = r.get("chain").and_then(Value::as_str).unwrap_or_default().to_string();
            Some((r.get("handle")?.as_u64()?, TableRule { chain, comment, audit }))
        })
        .collect()
}

/// Whether `rules` cannot name the rule trace line `line` names: its handle is unknown there, or is a rule of
/// another chain (the table was replaced whole since `rules` were read, and its rules numbered from 1 again).
pub fn stale_for(rules: &std::collections::HashMap<u64, TableRule>, line: &str) -> bool {
    let Some(h) = traced_handle(line) else { return false };
    let chain = line.split_whitespace().nth(5).unwrap_or_default();
    rules.get(&h).is_none_or(|r| r.chain != chain)
}

/// Trace line `line` of netpol's table with its rule as `rules` have it, whatever `nft monitor trace` printed
/// (`unknown rule handle N`, or the text the handle had in the ruleset the monitor read when it started): `trace id
/// I inet netpol CHAIN rule handle N [log prefix "netpol-audit " accept] [comment "C"] (verdict V)`. `None` when
/// the line names no rule of `rules`.
pub fn renamed(line: &str, rules: &std::collections::HashMap<u64, TableRule>) -> Option<String> {
    let h = traced_handle(line)?;
    let rule = rules.get(&h)?;
    let head: Vec<&str> = line.split_whitespace().take(6).collect();
    let verdict = line.get(line.rfind("(verdict ")?..)?;
    let log = if rule.audit { "log prefix \"netpol-audit \" accept " } else { "" };
    let comment = rule.comment.as_ref().map(|c| format!("comment \"{c}\" ")).unwrap_or_default();
    Some(format!("{} rule handle {h} {log}{comment}{verdict}", head.join(" ")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_an_allowed_and_a_dropped_trace() {
        let mut p = TraceParser::default();
        let lines = [
            r#"trace id 1a inet netpol_trace pre packet: iif "v1" ip saddr 10.77.1.1 ip daddr 10.77.0.2 ip ttl 64 tcp sport 40000 tcp dport 9090 tcp flags == syn"#,
            r#"trace id 1a inet netpol_trace pre rule ct state new meta nftrace set 1 (verdict continue)"#,
            r#"trace id 1a inet netpol forward rule ip daddr vmap @ingress_v4 (verdict jump in_x)"#,
            r#"trace id 1a inet netpol in_x rule ip saddr @sel_y_v4 counter packets 1 bytes 60 return comment "np:a/db/ingress/0 peer-0" (verdict return)"#,
            r#"trace id 1a inet netpol forward verdict continue"#,
            r#"trace id 1a inet netpol forward policy accept"#,
        ];
        let out: Vec<FlowRecord> = lines.iter().filter_map(|l| p.feed(l)).collect();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].verdict, "allow");
        assert_eq!(out[0].src, "10.77.1.1");
        assert_eq!(out[0].port, Some(9090));
        assert_eq!(out[0].allowed_by, vec!["np:a/db/ingress/0 peer-0"]);
        let drop = [
            r#"trace id 2b inet netpol_trace pre packet: iif "v1" ip saddr 10.77.1.2 ip daddr 10.77.0.2 udp sport 1 udp dport 53"#,
            r#"trace id 2b inet netpol in_x rule counter packets 3 bytes 9 drop comment "np-drop:ingress a/deny" (verdict drop)"#,
        ];
        let out: Vec<FlowRecord> = drop.iter().filter_map(|l| p.feed(l)).collect();
        assert_eq!(out[0].verdict, "deny");
        assert_eq!(out[0].protocol, "UDP");
        assert_eq!(out[0].dropped_by.as_deref(), Some("np-drop:ingress a/deny"));
        // A host-network pod's connection, traced on the node's output path, allowed by the output chain.
        let out_lines = [
            r#"trace id 3c inet netpol_trace out packet: oif "v1" ip saddr 10.1.0.1 ip daddr 10.77.0.2 tcp sport 1 tcp dport 80"#,
            r#"trace id 3c inet netpol output rule ip daddr vmap @ingress_v4 (verdict jump in_x)"#,
            r#"trace id 3c inet netpol in_x rule ip saddr @blk_y_v4 counter packets 1 bytes 60 return comment "np:a/db/ingress/1 peer-0" (verdict return)"#,
            r#"trace id 3c inet netpol output policy accept"#,
        ];
        let out: Vec<FlowRecord> = out_lines.iter().filter_map(|l| p.feed(l)).collect();
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].src.as_str(), out[0].verdict.as_str()), ("10.1.0.1", "allow"));
        assert_eq!(out[0].allowed_by, vec!["np:a/db/ingress/1 peer-0"]);
    }

    /// Every tier's matched rule is kept with its verdict: a pass (`goto` the later tiers' chain), a log rule
    /// (`continue`), the allow (`return`).
    #[test]
    fn the_walk_of_every_tier_is_kept_with_its_verdicts() {
        let mut p = TraceParser::default();
        let lines = [
            r#"trace id 4d inet netpol_trace pre packet: iif "v1" ip saddr 10.77.1.1 ip daddr 10.77.0.2 tcp sport 1 tcp dport 80"#,
            r#"trace id 4d inet netpol forward rule ip daddr vmap @ingress_v4 (verdict jump in_x)"#,
            r#"trace id 4d inet netpol in_x rule ip saddr @sel_a_v4 counter packets 1 bytes 60 goto in_x_t3 comment "np:cnp/admin/ingress/0 peer-0" (verdict goto in_x_t3)"#,
            r#"trace id 4d inet netpol in_x_t3 rule counter packets 1 bytes 60 comment "np:gnp/audit/ingress/2 any-peer" (verdict continue)"#,
            r#"trace id 4d inet netpol in_x_t3 rule ip saddr @sel_b_v4 counter packets 1 bytes 60 return comment "np:a/db/ingress/0 peer-0" (verdict return)"#,
            r#"trace id 4d inet netpol forward policy accept"#,
        ];
        let out: Vec<FlowRecord> = lines.iter().filter_map(|l| p.feed(l)).collect();
        let walk: Vec<(&str, &str)> = out[0].matched.iter().map(|m| (m.comment.as_str(), m.verdict.as_str())).collect();
        assert_eq!(
            walk,
            [
                ("np:cnp/admin/ingress/0 peer-0", "goto in_x_t3"),
                ("np:gnp/audit/ingress/2 any-peer", "continue"),
                ("np:a/db/ingress/0 peer-0", "return")
            ]
        );
        assert_eq!(out[0].allowed_by, vec!["np:a/db/ingress/0 peer-0"]);
    }

    /// A traced rule is named from the table as it is now, by its handle: an unknown handle, a handle the monitor
    /// still knows as another rule (audit mode), and a handle of another chain (the table replaced whole).
    #[test]
    fn a_traced_rule_is_named_by_its_handle_from_the_table() {
        assert_eq!(traced_handle("trace id 4b inet netpol in_f unknown rule handle 10 (verdict drop)"), Some(10));
        assert_eq!(
            traced_handle("trace id 4b inet netpol in_f rule counter drop comment \"x\" # handle 7 (verdict drop)"),
            Some(7)
        );
        assert_eq!(traced_handle("trace id 4b inet netpol in_f rule counter drop (verdict drop)"), None);
        assert_eq!(
            traced_handle("trace id 4b inet netpol_trace pre rule ct state new # handle 2 (verdict continue)"),
            None
        );
        let json = r#"{"nftables": [{"rule": {"family": "inet", "table": "netpol", "chain": "in_c", "handle": 7,
            "comment": "np:cnp/baseline-deny/ingress/0 peer-0", "expr": [{"counter": {"packets": 1, "bytes": 60}},
            {"log": {"prefix": "netpol-audit np:cnp/baseline-deny/ingress/0 peer-0 "}}, {"accept": null}]}},
            {"rule": {"family": "inet", "table": "netpol", "chain": "forward", "handle": 3,
            "expr": [{"vmap": {"key": {"payload": {"protocol": "ip", "field": "daddr"}}, "data": "@ingress_v4"}}]}}]}"#;
        let rules = table_rules_of(json);
        assert_eq!(rules[&3], TableRule { chain: "forward".into(), comment: None, audit: false });
        // The monitor's stale text (the enforce-mode drop that had handle 7) is replaced by the audit rule.
        let stale = "trace id 6 inet netpol in_c rule ip saddr @s counter packets 0 bytes 0 drop comment \"np:n/old/ingress/0 peer-0\" # handle 7 (verdict accept)";
        assert!(!stale_for(&rules, stale));
        assert_eq!(
            renamed(stale, &rules).unwrap(),
            "trace id 6 inet netpol in_c rule handle 7 log prefix \"netpol-audit \" accept comment \"np:cnp/baseline-deny/ingress/0 peer-0\" (verdict accept)"
        );
        // An uncommented rule loses the stale comment.
        let vmap = "trace id 6 inet netpol forward rule x comment \"np:n/old/ingress/0 peer-0\" # handle 3 (verdict jump in_c)";
        assert_eq!(renamed(vmap, &rules).unwrap(), "trace id 6 inet netpol forward rule handle 3 (verdict jump in_c)");
        // Handle 7 in another chain, or an unknown handle: what was read is stale; a line of no rule is not.
        assert!(stale_for(&rules, "trace id 8 inet netpol in_d rule counter drop # handle 7 (verdict drop)"));
        assert!(stale_for(&rules, "trace id 8 inet netpol in_c unknown rule handle 9 (verdict drop)"));
        assert!(!stale_for(&rules, "trace id 8 inet netpol_trace pre rule ct state new # handle 2 (verdict continue)"));
        assert_eq!(renamed("trace id 8 inet netpol in_c unknown rule handle 9 (verdict drop)", &rules), None);
    }
}
