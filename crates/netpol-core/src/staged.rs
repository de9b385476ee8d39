//! Staged policies (Calico's StagedNetworkPolicy, StagedGlobalNetworkPolicy and StagedKubernetesNetworkPolicy):
//! the cluster as if they were enforced ([`Cluster::with_staged`], "the staged view"), and explanations that give
//! the staged view's verdict beside the enforced one ([`explain_with_staged`]).
//!
//! Staged policies enforce nothing: the loader keeps them in [`Cluster::staged`], apart from
//! [`Cluster::policies`], and no enforced answer reads them. The staged view is what enforcing them does upstream
//! (libcalico-go's `ConvertStaged*ToEnforced`, then a create or update of the enforced object; the upstream e2e
//! test "enforcing staged-policies" does exactly that): `Set` creates the enforced policy of the same kind,
//! namespace and name, or replaces it; `Delete` deletes it. `Learn` and `Ignore` act as `Set`: upstream gives them
//! no meaning of their own (the validator checks them as whole policies, the update processors send them to Felix
//! like `Set`, and Felix's pending evaluation does not look at the action).
//!
//! Felix's own "pending" verdict (the flow logs' pending policies) is computed differently: it evaluates the staged
//! policies *beside* the enforced ones in each tier (a staged `Set` does not replace the enforced policy of its
//! name, they are ordered like any two policies), and never sees a staged `Delete` (the update processors drop
//! it). The two agree whenever a staged policy has no enforced namesake; netpol answers the question "what if I
//! enforce these", which is what a reviewer of staged changes asks.

use std::collections::{HashMap, HashSet};

use crate::compile::{Endpoint, Engine};
use crate::labels::Labels;
use crate::load::NAMESPACE_NAME_LABEL;
use crate::model::{Action, Cluster, Namespace, NsId, Policy, PolicyKey, PolicyTier, Scope, StagedAction, TierDef};
use crate::portset::Protocol;
use crate::verdict::{Explanation, StagedExplanation, StagedPolicyRef};

impl Cluster {
    /// The staged view: this cluster as if its staged policies were enforced, in input order. `Set`, `Learn` and
    /// `Ignore` put the staged policy in place of the enforced policy of the same kind, namespace and name (or add
    /// it); `Delete` removes that policy. The namespace of a staged policy that nothing else declared or referenced
    /// is added (implicitly, as the loader adds namespaces), and so is a tier it names that no Tier object
    /// declares (no order, default action Deny, as the loader assumes such tiers). Pods, their ids and everything
    /// else are unchanged, so an endpoint of one view is the same endpoint in the other. The built-in tiers go by
    /// Calico's names when the view has Calico objects (as the loader names them: a staged Calico policy makes
    /// the view a Calico cluster). The result has no staged policies.
    pub fn with_staged(&self) -> Cluster {
        let mut c = self.clone();
        let staged = std::mem::take(&mut c.staged);
        if staged.is_empty() {
            return c;
        }
        let mut policies: Vec<Option<Policy>> = std::mem::take(&mut c.policies).into_iter().map(Some).collect();
        let mut namespaces: HashMap<String, NsId> =
            c.namespaces.iter().enumerate().map(|(i, n)| (n.name.clone(), NsId::new(i))).collect();
        let mut index: HashMap<PolicyKey, usize> = HashMap::with_capacity(policies.len());
        for (i, p) in policies.iter().enumerate() {
            if let Some(p) = p {
                let namespace = p.ns().map(|ns| c.ns_name(ns).to_string()).unwrap_or_default();
                index.insert(PolicyKey { kind: p.kind, namespace, name: p.name.clone() }, i);
            }
        }
        for s in staged {
            let key = s.key();
            let mut policy = s.policy;
            if let Some(ns) = &s.namespace {
                let id = *namespaces.entry(ns.clone()).or_insert_with(|| {
                    c.namespaces.push(Namespace {
                        name: ns.clone(),
                        labels: Labels::from_iter([(NAMESPACE_NAME_LABEL, ns.as_str())]),
                        origin: None,
                    });
                    NsId::new(c.namespaces.len() - 1)
                });
                policy.scope = Scope::Namespace(id);
            }
            if let Some(tier) = &s.implicit_tier {
                let i = match c.tiers.iter().skip(3).position(|t| t.name == *tier) {
                    Some(i) => i + 3,
                    None => {
                        c.tiers.push(TierDef {
                            name: tier.clone(),
                            order: None,
                            default_action: Action::Deny,
                            origin: None,
                            pass_to_network_policy: false,
                        });
                        c.tiers.len() - 1
                    }
                };
                policy.tier = PolicyTier::from_index(i);
            }
            match (s.action, index.get(&key)) {
                (StagedAction::Delete, Some(&i)) => {
                    policies[i] = None;
                    index.remove(&key);
                }
                (StagedAction::Delete, None) => {}
                (_, Some(&i)) => policies[i] = Some(policy),
                (_, None) => {
                    index.insert(key, policies.len());
                    policies.push(Some(policy));
                }
            }
        }
        c.policies = policies.into_iter().flatten().collect();
        // As the loader names them: Calico's names as soon as there is a Calico object.
        if c.has_calico() {
            for (t, name) in c.tiers.iter_mut().zip(crate::load::builtin_tier_names()) {
                t.name = name.to_string();
            }
        }
        c
    }
}

/// The staged view of `enforced`'s cluster, compiled ([`Cluster::with_staged`]), or `None` when the cluster has
/// no staged policies (the view would be the cluster itself). Compile it once and use it for every flow.
pub fn staged_engine(enforced: &Engine) -> Option<Engine> {
    let c = enforced.cluster();
    (!c.staged.is_empty()).then(|| Engine::with_cni(c.with_staged(), Some(enforced.cni())))
}

/// Explains one flow on the enforced engine and, when its cluster has staged policies, adds what the staged view
/// makes of it (`staged`): its verdict, whether that differs, the staged policies that bear on the flow, and each
/// direction's walk and decision. `staged` must be compiled from `enforced.cluster().with_staged()`; endpoints are
/// the same in both (pods are unchanged). Without staged policies this is [`Engine::explain_named`].
pub fn explain_with_staged(
    enforced: &Engine,
    staged: &Engine,
    src: &Endpoint,
    dst: &Endpoint,
    dst_name: Option<&str>,
    proto: Protocol,
    port: u16,
) -> Explanation {
    let info = crate::compile::FlowInfo { dst_name, request: None };
    explain_flow_with_staged(enforced, staged, src, dst, info, proto, port)
}

/// [`explain_with_staged`] for a flow with what it says beyond its ends and port (see
/// [`Engine::explain_flow`]).
pub fn explain_flow_with_staged(
    enforced: &Engine,
    staged: &Engine,
    src: &Endpoint,
    dst: &Endpoint,
    info: crate::compile::FlowInfo<'_>,
    proto: Protocol,
    port: u16,
) -> Explanation {
    let mut ex = enforced.explain_flow(src, dst, info, proto, port);
    let cluster = enforced.cluster();
    if cluster.staged.is_empty() {
        return ex;
    }
    let st = staged.explain_flow(src, dst, info, proto, port);
    let keys: HashSet<&PolicyKey> =
        [&ex.egress, &ex.ingress, &st.egress, &st.ingress].into_iter().flat_map(|s| &s.policy_keys).collect();
    let policies = cluster
        .staged
        .iter()
        .filter(|s| keys.contains(&s.key()))
        .map(|s| StagedPolicyRef {
            kind: s.staged_kind(),
            name: match &s.namespace {
                Some(ns) => format!("{ns}/{}", s.policy.name),
                None => s.policy.name.clone(),
            },
            action: s.action,
            policy: s.key().to_string(),
            source: s.policy.origin.to_string(),
        })
        .collect();
    ex.staged = Some(Box::new(StagedExplanation {
        verdict: st.verdict,
        changed: st.verdict != ex.verdict,
        policies,
        note: st.note,
        egress: st.egress,
        ingress: st.ingress,
    }));
    ex
}
