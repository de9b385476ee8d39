//! Cilium's host policies and Node peers (`cilium_refs.rs` resolves the entities and `toServices`):
//!
//! - **Host policies** (a CiliumClusterwideNetworkPolicy rule with `nodeSelector`, `pkg/policy/api/rule.go`): the
//!   subject is the host endpoint of each Node whose labels the selector matches (its addresses and the
//!   hostNetwork pods on it: see [`crate::host`]). A CiliumNetworkPolicy cannot have one
//!   (`pkg/k8s/apis/cilium.io/v2/cnp_types.go`, `Parse`); a host rule has no L7 rules on ingress and only DNS
//!   rules on egress (`pkg/policy/api/rule_validation.go`, `IngressRule.sanitize` and `EgressRule.sanitize` with
//!   `hostPolicy`). There the entities `host` and `remote-node` are relative to that host's Node, as
//!   [`crate::model::Peer::SubjectNodes`] is for any subject: `host` is the node itself, `remote-node` every other
//!   Node.
//! - **`fromNodes`/`toNodes`** (`pkg/policy/api/ingress.go`, `egress.go`): label selectors over Nodes. Cilium adds
//!   `reserved:remote-node` to each (`pkg/k8s/apis/cilium.io/utils/utils.go`, `parseToCiliumIngressCommonRule`),
//!   so a node selector never selects the subject's own node (that one is the `host` identity): relative to the
//!   subject, it is [`crate::model::Peer::NodeSelector`], matched per flow. A peer is the matching Nodes'
//!   addresses (their host namespaces: a hostNetwork pod there too), never a CIDR peer (those never select a node).
//!   Beside it a placeholder keeps the field, for the warning of a selector no Node matches ([`resolve`], right
//!   after `cilium_refs::resolve`, wherever that runs).
//! - **`fromGroups`/`toGroups`** (`pkg/policy/api/groups.go`): cloud provider groups (AWS security groups), whose
//!   members only the provider's API knows (a controller turns a group into a CiliumCIDRGroup labelled
//!   `extgrp.cilium.io/<hash>`): the peer matches nothing here, with a warning ([`groups`]).

use std::collections::HashSet;

use super::objects as obj;
use super::validate::Errors;
use super::{Diagnostic, Severity};
use crate::calico_selector::Expr;
use crate::model::{cilium_keys, CalicoPeer, Cluster, Direction, Peer, Scope};

fn eq(key: &str, value: &str) -> Expr {
    Expr::Eq { key: key.to_string(), value: value.to_string() }
}

/// A placeholder of `kind` written at `path` (the format of `cilium_refs.rs`: the first two terms are the kind and
/// the path).
fn placeholder(kind: &str, path: &str, rest: Option<Expr>) -> Peer {
    let mut terms = vec![eq(cilium_keys::REF, kind), eq(cilium_keys::REF_PATH, path)];
    terms.extend(rest);
    Peer::Calico(Box::new(CalicoPeer { selector: Some(Expr::And(terms)), ..Default::default() }))
}

/// A placeholder read back: its kind, path and selector (`nodes` only).
fn read(peer: &Peer) -> Option<(&str, &str, Option<&Expr>)> {
    let Peer::Calico(c) = peer else { return None };
    let Some(Expr::And(terms)) = &c.selector else { return None };
    fn value<'a>(t: Option<&'a Expr>, key: &str) -> Option<&'a str> {
        match t {
            Some(Expr::Eq { key: k, value }) if k == key => Some(value.as_str()),
            _ => None,
        }
    }
    let kind = value(terms.first(), cilium_keys::REF)?;
    let path = value(terms.get(1), cilium_keys::REF_PATH)?;
    Some((kind, path, terms.get(2)))
}

/// A `fromNodes`/`toNodes` entry (its selector over Node labels) written at `path`: the peer, and a placeholder
/// (which matches nothing) that keeps its field for [`resolve`]'s warning.
pub(crate) fn node_selector(selector: Expr, path: &str) -> [Peer; 2] {
    [placeholder("nodes", path, Some(selector.clone())), Peer::NodeSelector(selector)]
}

/// The L7 rules a host policy's rule may not have (`rule_validation.go`: none on host ingress; on host egress only
/// DNS), as errors naming the entry's `rules`.
pub(crate) fn host_l7(r: &obj::CiliumPeerRule, dir: Direction, path: &str, errs: &mut Errors) {
    fn some<T>(v: &Option<Vec<T>>) -> bool {
        v.as_ref().is_some_and(|v| !v.is_empty())
    }
    for (i, pr) in r.to_ports.iter().flatten().enumerate() {
        let Some(rules) = &pr.rules else { continue };
        let (http, dns, other) = (some(&rules.http), some(&rules.dns), some(&rules.kafka) || some(&rules.l7));
        let p = format!("{path}.toPorts[{i}].rules");
        match dir {
            Direction::Ingress if http || dns || other => {
                errs.add(p, "L7 policy is not supported on host ingress (host policies: no L7 rules on ingress)")
            }
            Direction::Egress if http || other => {
                let what = if http { "HTTP" } else { "this L7 protocol" };
                errs.add(
                    p,
                    format!("L7 protocol {what} is not supported on host egress (host policies: DNS rules only)"),
                )
            }
            _ => {}
        }
    }
}

/// A `fromGroups`/`toGroups` field at `path`: a warning, the peer matches nothing.
pub(crate) fn groups(path: &str, errs: &mut Errors) {
    errs.warn(
        path.to_string(),
        "cloud provider groups (AWS security groups): their members are known only to the provider's API, which \
         Cilium's operator asks; netpol cannot: this peer matches nothing here",
    );
}

/// Warns of each `fromNodes`/`toNodes` selector that no Node of the cluster matches (it then matches nothing).
pub(crate) fn resolve(c: &Cluster, diags: &mut Vec<Diagnostic>) {
    let mut said: HashSet<(String, String)> = HashSet::new();
    for pol in c.policies.iter().filter(|p| p.kind.is_cilium()) {
        let object = match &pol.scope {
            Scope::Namespace(ns) => format!("{} {}/{}", pol.kind.as_str(), c.ns(*ns).name, pol.name),
            Scope::Cluster(_) => format!("{} {}", pol.kind.as_str(), pol.name),
        };
        for rule in pol.ingress.iter().chain(&pol.egress) {
            for peer in &rule.peers {
                let Some(("nodes", path, sel)) = read(peer) else { continue };
                let sel = sel.cloned().unwrap_or(Expr::All);
                if c.nodes.iter().any(|n| sel.matches(&n.labels)) {
                    continue;
                }
                let message = "no Node of the input matches this selector: it matches nothing here".to_string();
                if said.insert((format!("{} {path}", pol.origin), message.clone())) {
                    diags.push(Diagnostic {
                        severity: Severity::Warning,
                        origin: pol.origin.clone(),
                        object: Some(object.clone()),
                        field: Some(path.to_string()),
                        message,
                    });
                }
            }
        }
    }
}
