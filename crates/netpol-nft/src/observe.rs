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

#[cfg(test)]
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
}
