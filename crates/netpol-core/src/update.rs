//! Update: applies object changes (add, replace, delete of namespaces, pods and policies) to a compiled
//! [`Engine`], for live clusters where objects change one event at a time.
//!
//! Objects are named by namespace and name, as the Kubernetes API names them; the `ns` field of a given
//! [`Pod`] or [`Policy`] is ignored. A namespace that is deleted while pods or policies still refer to it stays
//! as a referenced, undeclared namespace with only its automatic label, as the loader treats it.

use crate::compile::Engine;
use crate::load::NAMESPACE_NAME_LABEL;
use crate::model::{Cluster, Namespace, NsId, Pod, Policy};
use crate::selector::Labels;

/// One object change.
#[derive(Clone, Debug)]
pub enum Change {
    /// Adds the pod, or replaces the pod with the same namespace and name.
    PutPod { namespace: String, pod: Pod },
    DeletePod { namespace: String, name: String },
    /// Adds the policy, or replaces the policy with the same namespace and name.
    PutPolicy { namespace: String, policy: Policy },
    DeletePolicy { namespace: String, name: String },
    /// Adds or replaces a namespace (its labels should include the automatic `kubernetes.io/metadata.name`).
    PutNamespace(Namespace),
    DeleteNamespace { name: String },
}

/// What [`Engine::update`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UpdateStats {
    /// Changes applied to the compiled engine in place.
    pub in_place: usize,
    /// Whether the engine was recompiled from its cluster (changes that cannot be applied in place).
    pub recompiled: bool,
}

/// The namespace id of `name`, creating an undeclared namespace when it does not exist.
fn ns_or_insert(c: &mut Cluster, name: &str) -> NsId {
    if let Some(id) = c.namespace_id(name) {
        return id;
    }
    let mut labels = Labels::new();
    labels.insert(NAMESPACE_NAME_LABEL.to_string(), name.to_string());
    c.namespaces.push(Namespace { name: name.to_string(), labels, origin: None });
    (c.namespaces.len() - 1) as NsId
}

/// Applies one change to a cluster (no compiled state involved). Returns whether anything changed.
pub fn apply_to_cluster(c: &mut Cluster, change: Change) -> bool {
    match change {
        Change::PutPod { namespace, mut pod } => {
            let ns = ns_or_insert(c, &namespace);
            pod.ns = ns;
            match c.pods.iter().position(|p| p.ns == ns && p.name == pod.name) {
                Some(i) => c.pods[i] = pod,
                None => c.pods.push(pod),
            }
            true
        }
        Change::DeletePod { namespace, name } => {
            let Some(ns) = c.namespace_id(&namespace) else { return false };
            let before = c.pods.len();
            c.pods.retain(|p| !(p.ns == ns && p.name == name));
            before != c.pods.len()
        }
        Change::PutPolicy { namespace, mut policy } => {
            let ns = ns_or_insert(c, &namespace);
            policy.ns = ns;
            match c.policies.iter().position(|p| p.ns == ns && p.name == policy.name) {
                Some(i) => c.policies[i] = policy,
                None => c.policies.push(policy),
            }
            true
        }
        Change::DeletePolicy { namespace, name } => {
            let Some(ns) = c.namespace_id(&namespace) else { return false };
            let before = c.policies.len();
            c.policies.retain(|p| !(p.ns == ns && p.name == name));
            before != c.policies.len()
        }
        Change::PutNamespace(n) => {
            match c.namespace_id(&n.name) {
                Some(id) => c.namespaces[id as usize] = n,
                None => c.namespaces.push(n),
            }
            true
        }
        Change::DeleteNamespace { name } => {
            let Some(id) = c.namespace_id(&name) else { return false };
            let used = c.pods.iter().any(|p| p.ns == id) || c.policies.iter().any(|p| p.ns == id);
            if used {
                let mut labels = Labels::new();
                labels.insert(NAMESPACE_NAME_LABEL.to_string(), name.clone());
                c.namespaces[id as usize] = Namespace { name, labels, origin: None };
            } else {
                c.namespaces.remove(id as usize);
                let fix = |ns: &mut NsId| {
                    if *ns > id {
                        *ns -= 1;
                    }
                };
                c.pods.iter_mut().for_each(|p| fix(&mut p.ns));
                c.policies.iter_mut().for_each(|p| fix(&mut p.ns));
            }
            true
        }
    }
}

impl Engine {
    /// Applies `changes` in order. The engine answers afterwards exactly as `Engine::new` on the changed
    /// cluster would.
    pub fn update(&mut self, changes: Vec<Change>) -> UpdateStats {
        let mut cluster = std::mem::take(&mut self.cluster);
        let mut changed = false;
        for ch in changes {
            changed |= apply_to_cluster(&mut cluster, ch);
        }
        if !changed {
            self.cluster = cluster;
            return UpdateStats::default();
        }
        *self = Engine::new(cluster);
        UpdateStats { in_place: 0, recompiled: true }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::compile::Endpoint;
    use crate::load::load_str;
    use crate::portset::Protocol;

    const BASE: &str = "
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: prod, labels: {app: web}}
status: {podIP: 10.0.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: cli, namespace: prod, labels: {app: cli}}
status: {podIP: 10.0.0.2}
";

    const DENY: &str = "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny, namespace: prod}
spec: {podSelector: {matchLabels: {app: web}}, policyTypes: [Ingress]}
";

    fn allowed(e: &Engine, src: &str, dst: &str) -> bool {
        let s = e.cluster.find_pod("prod", src).unwrap();
        let d = e.cluster.find_pod("prod", dst).unwrap();
        e.allowed(&Endpoint::Pod { pod: s, ip: None }, &Endpoint::Pod { pod: d, ip: None }, Protocol::Tcp, 80)
    }

    #[test]
    fn put_and_delete_policy_change_verdicts() {
        let mut e = Engine::new(load_str("base", BASE).cluster);
        assert!(allowed(&e, "cli", "web"));
        let pol = load_str("deny", DENY).cluster.policies.remove(0);
        e.update(vec![Change::PutPolicy { namespace: "prod".into(), policy: pol }]);
        assert!(!allowed(&e, "cli", "web"));
        let st = e.update(vec![Change::DeletePolicy { namespace: "prod".into(), name: "deny".into() }]);
        assert!(st.recompiled || st.in_place > 0);
        assert!(allowed(&e, "cli", "web"));
    }

    #[test]
    fn deleting_a_missing_object_changes_nothing() {
        let mut e = Engine::new(load_str("base", BASE).cluster);
        let st = e.update(vec![Change::DeletePod { namespace: "prod".into(), name: "nope".into() }]);
        assert_eq!(st, UpdateStats::default());
        assert_eq!(e.cluster.pods.len(), 2);
    }

    #[test]
    fn deleted_namespace_still_referenced_stays_undeclared() {
        let mut e = Engine::new(load_str("base", BASE).cluster);
        e.update(vec![Change::DeleteNamespace { name: "prod".into() }]);
        let id = e.cluster.namespace_id("prod").unwrap();
        assert!(e.cluster.ns(id).origin.is_none());
        assert_eq!(e.cluster.ns(id).labels.get(NAMESPACE_NAME_LABEL).map(String::as_str), Some("prod"));
        e.update(vec![
            Change::DeletePod { namespace: "prod".into(), name: "web".into() },
            Change::DeletePod { namespace: "prod".into(), name: "cli".into() },
            Change::DeleteNamespace { name: "prod".into() },
        ]);
        assert!(e.cluster.namespace_id("prod").is_none());
    }
}
