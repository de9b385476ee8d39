//! Nodes and the API server of the cluster, for the variants that need them (Cilium: `host`, `remote-node` and
//! `kube-apiserver` are derived from them).
//!
//! * `max(2, node exporters)` Nodes `node-NNNN` (labels `kubernetes.io/hostname`, `kubernetes.io/os: linux`,
//!   `topology.kubernetes.io/zone` `zone-a|b|c` in turn, `node.kubernetes.io/instance-type`), with
//!   `status.addresses` InternalIP and Hostname. Node exporter `k` (a DaemonSet pod on the host network) runs on
//!   node `k`, and the node's InternalIP is that pod's IP, as on a real node; nodes without an exporter (with fewer
//!   than 2 exporters) have 10.255.255.1, 10.255.255.2 in turn. Every other pod is placed on a node at random.
//! * The `default` Namespace, the Service `default/kubernetes` (ClusterIP 10.96.0.1, `https` 443/TCP) and its
//!   EndpointSlice (`kubernetes.io/service-name: kubernetes`) naming the API servers of [`API_SERVERS`] on 6443/TCP.

use std::fmt::{self, Write};

use crate::plan::Plan;
use crate::rng::{Rng, S_NODES};
use crate::yaml::write_ipv4;

/// The API server addresses (an HA control plane outside the pod network, one per zone).
pub(crate) const API_SERVERS: [&str; 3] = ["172.20.0.10", "172.20.1.10", "172.20.2.10"];

const ZONES: [&str; 3] = ["zone-a", "zone-b", "zone-c"];

/// How many nodes the cluster of `plan` runs on.
pub(crate) fn count(plan: &Plan) -> usize {
    plan.system.node_exporters.max(2)
}

/// The node of pod `index` (not a node exporter), among `nodes`.
pub(crate) fn node_of(seed: u64, index: usize, nodes: usize) -> usize {
    Rng::new(seed, S_NODES, index as u64).below(nodes)
}

/// Appends the name of node `k`.
pub(crate) fn push_name(o: &mut String, k: usize) -> fmt::Result {
    write!(o, "node-{k:04}")
}

/// The Nodes of the cluster of `plan` (`nodes` of them, as [`count`] gives).
pub(crate) fn write_nodes(o: &mut String, plan: &Plan, nodes: usize) -> fmt::Result {
    let exporters = plan.system.node_exporters;
    // Node exporters come after the CoreDNS and Prometheus pods.
    let first_exporter = plan.system.dns + plan.system.prometheus;
    let mut name = String::with_capacity(16);
    for k in 0..nodes {
        name.clear();
        push_name(&mut name, k)?;
        writeln!(
            o,
            "---\napiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n  labels:\n    kubernetes.io/hostname: {name}\n    kubernetes.io/os: linux\n    topology.kubernetes.io/zone: {}\n    node.kubernetes.io/instance-type: m6i.4xlarge\nstatus:\n  addresses:",
            ZONES[k % ZONES.len()]
        )?;
        o.push_str("  - type: InternalIP\n    address: \"");
        if k < exporters {
            write_ipv4(o, first_exporter + k)?;
        } else {
            write!(o, "10.255.255.{}", k - exporters + 1)?;
        }
        writeln!(o, "\"\n  - type: Hostname\n    address: {name}")?;
    }
    Ok(())
}

/// The `default` Namespace, the `default/kubernetes` Service and its EndpointSlice.
pub(crate) fn write_api_server(o: &mut String) -> fmt::Result {
    o.push_str(
        "---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: default\n  labels:\n    kubernetes.io/metadata.name: default\n\
         ---\napiVersion: v1\nkind: Service\nmetadata:\n  name: kubernetes\n  namespace: default\n  labels:\n    component: apiserver\n    provider: kubernetes\n\
         spec:\n  type: ClusterIP\n  clusterIP: 10.96.0.1\n  ports:\n  - name: https\n    port: 443\n    protocol: TCP\n    targetPort: 6443\n\
         ---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: kubernetes\n  namespace: default\n  labels:\n    kubernetes.io/service-name: kubernetes\n\
         addressType: IPv4\nendpoints:\n",
    );
    for a in API_SERVERS {
        writeln!(o, "- addresses:\n  - \"{a}\"\n  conditions:\n    ready: true")?;
    }
    o.push_str("ports:\n- name: https\n  port: 6443\n  protocol: TCP\n");
    Ok(())
}
