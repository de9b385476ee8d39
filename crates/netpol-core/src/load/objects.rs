//! The objects netpol reads, as lean serde types: only the fields netpol uses are decoded.
//!
//! Strictness follows `kubectl apply` (strict field validation, its default) for the kinds netpol models fully:
//! Namespace, NetworkPolicy and the admin policy kinds (ClusterNetworkPolicy, AdminNetworkPolicy,
//! BaselineAdminNetworkPolicy) reject unknown fields (the field path and a "did you mean" are reported by the
//! loader), and every field of theirs is type-checked, including ObjectMeta's; so do Calico's policy kinds (staged
//! ones included), Tiers and network sets. Pods, workloads, Nodes and ServiceAccounts are validated in what netpol
//! reads (metadata name/namespace/labels, container ports, hostNetwork, nodeName, serviceAccountName, pod IPs, the
//! pod template; a Node's addresses) and the rest is skipped without being decoded.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::NamespaceCondition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, OwnerReference, Time};
use serde::de::{self, IgnoredAny, Visitor};
use serde::{Deserialize, Deserializer};

pub type StrMap = BTreeMap<String, String>;

/// ObjectMeta of the fully modelled kinds: every field known to the API, type-checked.
#[derive(Deserialize, Default)]
#[allow(dead_code)] // fields netpol does not read are decoded for their type check only
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StrictMeta {
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub labels: Option<StrMap>,
    pub generate_name: Option<String>,
    pub self_link: Option<String>,
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    pub generation: Option<i64>,
    pub creation_timestamp: Option<Time>,
    pub deletion_timestamp: Option<Time>,
    pub deletion_grace_period_seconds: Option<i64>,
    pub annotations: Option<StrMap>,
    pub owner_references: Option<Vec<OwnerReference>>,
    pub finalizers: Option<Vec<String>>,
    pub managed_fields: Option<Vec<ManagedFieldsEntry>>,
}

/// ObjectMeta of pods and workloads: what netpol reads.
#[derive(Deserialize, Default)]
pub struct Meta {
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub labels: Option<StrMap>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NamespaceObj {
    #[serde(rename = "apiVersion")]
    pub _api_version: Option<IgnoredAny>,
    #[serde(rename = "kind")]
    pub _kind: Option<IgnoredAny>,
    #[serde(default)]
    pub metadata: StrictMeta,
    #[serde(rename = "spec")]
    pub _spec: Option<NamespaceSpec>,
    #[serde(rename = "status")]
    pub _status: Option<NamespaceStatus>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamespaceSpec {
    #[serde(rename = "finalizers")]
    pub _finalizers: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamespaceStatus {
    #[serde(rename = "phase")]
    pub _phase: Option<String>,
    #[serde(rename = "conditions")]
    pub _conditions: Option<Vec<NamespaceCondition>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkPolicyObj {
    #[serde(rename = "apiVersion")]
    pub _api_version: Option<IgnoredAny>,
    #[serde(rename = "kind")]
    pub _kind: Option<IgnoredAny>,
    #[serde(default)]
    pub metadata: StrictMeta,
    pub spec: Option<NetworkPolicySpec>,
    /// Removed from the API in 1.28 (it was alpha); tolerated, never read.
    #[serde(rename = "status")]
    pub _status: Option<IgnoredAny>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkPolicySpec {
    pub pod_selector: Option<LabelSelector>,
    pub ingress: Option<Vec<IngressRule>>,
    pub egress: Option<Vec<EgressRule>>,
    pub policy_types: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngressRule {
    pub from: Option<Vec<PolicyPeer>>,
    pub ports: Option<Vec<PolicyPort>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressRule {
    pub to: Option<Vec<PolicyPeer>>,
    pub ports: Option<Vec<PolicyPort>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyPeer {
    pub pod_selector: Option<LabelSelector>,
    pub namespace_selector: Option<LabelSelector>,
    pub ip_block: Option<IpBlock>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpBlock {
    pub cidr: String,
    pub except: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyPort {
    pub protocol: Option<String>,
    pub port: Option<IntOrString>,
    pub end_port: Option<i32>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelector {
    pub match_labels: Option<StrMap>,
    pub match_expressions: Option<Vec<Requirement>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requirement {
    pub key: String,
    pub operator: String,
    pub values: Option<Vec<String>>,
}

/// `port`: a 32-bit integer or a string, as the API's IntOrString.
#[derive(Clone, Debug, PartialEq)]
pub enum IntOrString {
    Int(i32),
    String(String),
}

impl<'de> Deserialize<'de> for IntOrString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = IntOrString;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port number or a port name")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<IntOrString, E> {
                i32::try_from(v)
                    .map(IntOrString::Int)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &"a 32-bit integer or a port name"))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<IntOrString, E> {
                i32::try_from(v)
                    .map(IntOrString::Int)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &"a 32-bit integer or a port name"))
            }
            fn visit_u128<E: de::Error>(self, v: u128) -> Result<IntOrString, E> {
                Err(E::custom(format!("invalid value: integer `{v}`, expected a 32-bit integer or a port name")))
            }
            fn visit_i128<E: de::Error>(self, v: i128) -> Result<IntOrString, E> {
                Err(E::custom(format!("invalid value: integer `{v}`, expected a 32-bit integer or a port name")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<IntOrString, E> {
                Ok(IntOrString::String(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

// --- Pods and workloads: what netpol reads; everything else is skipped. ---

#[derive(Deserialize)]
pub struct PodObj {
    #[serde(default)]
    pub metadata: Meta,
    pub spec: Option<PodSpec>,
    pub status: Option<PodStatus>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    #[serde(default)]
    pub containers: Vec<Container>,
    pub init_containers: Option<Vec<Container>>,
    pub host_network: Option<bool>,
    pub node_name: Option<String>,
    pub service_account_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    pub ports: Option<Vec<ContainerPort>>,
    pub restart_policy: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerPort {
    pub container_port: i32,
    pub name: Option<String>,
    pub protocol: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStatus {
    #[serde(rename = "podIP")]
    pub pod_ip: Option<String>,
    #[serde(rename = "podIPs")]
    pub pod_ips: Option<Vec<PodIp>>,
}

#[derive(Deserialize)]
pub struct PodIp {
    pub ip: String,
}

#[derive(Deserialize)]
pub struct PodTemplate {
    pub metadata: Option<Meta>,
    pub spec: Option<PodSpec>,
}

/// Deployment, ReplicaSet, StatefulSet, DaemonSet, Job.
#[derive(Deserialize)]
pub struct WorkloadObj {
    #[serde(default)]
    pub metadata: Meta,
    pub spec: Option<WorkloadSpec>,
}

#[derive(Deserialize)]
pub struct WorkloadSpec {
    pub template: Option<PodTemplate>,
}

#[derive(Deserialize)]
pub struct CronJobObj {
    #[serde(default)]
    pub metadata: Meta,
    pub spec: Option<CronJobSpec>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CronJobSpec {
    pub job_template: Option<JobTemplate>,
}

#[derive(Deserialize)]
pub struct JobTemplate {
    pub spec: Option<WorkloadSpec>,
}

// --- The admin policy dialects (`policy.networking.k8s.io`): strict, like NetworkPolicy. Numbers are read wide
// (`i64`) so that a value out of range gets the API server's range message, not a type error. Required fields
// are `Option`s, so that a missing one is reported by validation with its path. ---

/// A `ClusterNetworkPolicy` (`v1alpha2`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterNetworkPolicyObj {
    #[serde(rename = "apiVersion")]
    pub _api_version: Option<IgnoredAny>,
    #[serde(rename = "kind")]
    pub _kind: Option<IgnoredAny>,
    #[serde(default)]
    pub metadata: StrictMeta,
    pub spec: Option<CnpSpec>,
    /// Conditions written by the implementation; never read.
    #[serde(rename = "status")]
    pub _status: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CnpSpec {
    pub tier: Option<String>,
    pub priority: Option<i64>,
    pub subject: Option<AdminSubject>,
    pub ingress: Option<Vec<CnpIngressRule>>,
    pub egress: Option<Vec<CnpEgressRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CnpIngressRule {
    pub name: Option<String>,
    pub action: Option<String>,
    pub from: Option<Vec<AdminPeer>>,
    pub protocols: Option<Vec<CnpProtocol>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CnpEgressRule {
    pub name: Option<String>,
    pub action: Option<String>,
    pub to: Option<Vec<AdminPeer>>,
    pub protocols: Option<Vec<CnpProtocol>>,
}

/// One entry of `protocols`: exactly one field.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CnpProtocol {
    pub tcp: Option<CnpProtocolPort>,
    pub udp: Option<CnpProtocolPort>,
    pub sctp: Option<CnpProtocolPort>,
    pub destination_named_port: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CnpProtocolPort {
    pub destination_port: Option<CnpPort>,
}

/// `destinationPort`: exactly one of `number` and `range`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CnpPort {
    pub number: Option<i64>,
    pub range: Option<CnpPortRange>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CnpPortRange {
    pub start: Option<i64>,
    pub end: Option<i64>,
}

/// An `AdminNetworkPolicy` (`v1alpha1`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AdminNetworkPolicyObj {
    #[serde(rename = "apiVersion")]
    pub _api_version: Option<IgnoredAny>,
    #[serde(rename = "kind")]
    pub _kind: Option<IgnoredAny>,
    #[serde(default)]
    pub metadata: StrictMeta,
    pub spec: Option<AnpSpec>,
    #[serde(rename = "status")]
    pub _status: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AnpSpec {
    pub priority: Option<i64>,
    pub subject: Option<AdminSubject>,
    pub ingress: Option<Vec<AnpIngressRule>>,
    pub egress: Option<Vec<AnpEgressRule>>,
}

/// A `BaselineAdminNetworkPolicy` (`v1alpha1`): no `priority`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BaselineAdminNetworkPolicyObj {
    #[serde(rename = "apiVersion")]
    pub _api_version: Option<IgnoredAny>,
    #[serde(rename = "kind")]
    pub _kind: Option<IgnoredAny>,
    #[serde(default)]
    pub metadata: StrictMeta,
    pub spec: Option<BanpSpec>,
    #[serde(rename = "status")]
    pub _status: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BanpSpec {
    pub subject: Option<AdminSubject>,
    pub ingress: Option<Vec<AnpIngressRule>>,
    pub egress: Option<Vec<AnpEgressRule>>,
}

/// An ingress rule of an ANP or a BANP (the actions they allow differ; validation checks them).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnpIngressRule {
    pub name: Option<String>,
    pub action: Option<String>,
    pub from: Option<Vec<AdminPeer>>,
    pub ports: Option<Vec<AnpPort>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnpEgressRule {
    pub name: Option<String>,
    pub action: Option<String>,
    pub to: Option<Vec<AdminPeer>>,
    pub ports: Option<Vec<AnpPort>>,
}

/// One entry of `ports` (`v1alpha1`): exactly one field.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AnpPort {
    pub port_number: Option<AnpPortNumber>,
    pub named_port: Option<String>,
    pub port_range: Option<AnpPortRange>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnpPortNumber {
    pub protocol: Option<String>,
    pub port: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnpPortRange {
    pub protocol: Option<String>,
    pub start: Option<i64>,
    pub end: Option<i64>,
}

/// `subject` of every admin kind: exactly one of `namespaces` and `pods`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSubject {
    pub namespaces: Option<LabelSelector>,
    pub pods: Option<NamespacedPod>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NamespacedPod {
    pub namespace_selector: Option<LabelSelector>,
    pub pod_selector: Option<LabelSelector>,
}

/// A peer of any admin kind and direction: exactly one field. Which fields a kind and direction allow is checked
/// by validation (so that `networks` in an ingress rule is told it is egress-only, not that it is unknown).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AdminPeer {
    pub namespaces: Option<LabelSelector>,
    pub pods: Option<NamespacedPod>,
    pub nodes: Option<LabelSelector>,
    pub networks: Option<Vec<String>>,
    pub domain_names: Option<Vec<String>>,
}

// --- Calico (`projectcalico.org/v3`, and the same spec as `crd.projectcalico.org/v1`): strict, like the admin
// kinds. Numbers are read wide and strings as written, so that validation gives the API server's message. ---

/// A Calico `NetworkPolicy` (namespaced).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CalicoNetworkPolicyObj {
    #[serde(rename = "apiVersion")]
    pub _api_version: Option<IgnoredAny>,
    #[serde(rename = "kind")]
    pub _kind: Option<IgnoredAny>,
    #[serde(default)]
    pub metadata: StrictMeta,
    pub spec: Option<CalicoNetworkPolicySpec>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CalicoNetworkPolicySpec {
    pub tier: Option<String>,
    pub order: Option<f64>,
    pub ingress: Option<Vec<CalicoRuleObj>>,
    pub egress: Option<Vec<CalicoRuleObj>>,
    pub selector: Option<String>,
    pub types: Option<Vec<String>>,
    pub service_account_selector: Option<String>,
    pub performance_hints: Option<Vec<String>>,
}

/// A Calico `GlobalNetworkPolicy` (cluster-scoped).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GlobalNetworkPolicyObj {
    #[serde(rename = "apiVersion")]
    pub _api_version: Option<IgnoredAny>,
    #[serde(rename = "kind")]
    pub _kind: Option<IgnoredAny>,
    #[serde(default)]
    pub metadata: StrictMeta,
    pub spec: Option<GlobalNetworkPolicySpec>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GlobalNetworkPolicySpec {
    pub tier: Option<String>,
    pub order: Option<f64>,
    pub ingress: Option<Vec<CalicoRuleObj>>,
    pub egress: Option<Vec<CalicoRuleObj>>,
    pub selector: Option<String>,
    pub types: Option<Vec<String>>,
    pub do_not_track: Option<bool>,
    #[serde(rename = "preDNAT")]
    pub pre_dnat: Option<bool>,
    pub apply_on_forward: Option<bool>,
    pub service_account_selector: Option<String>,
    pub namespace_selector: Option<String>,
    pub performance_hints: Option<Vec<String>>,
}

/// A Calico `StagedNetworkPolicy` (namespaced): a NetworkPolicy's spec and `stagedAction`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StagedNetworkPolicyObj {
    #[serde(rename = "apiVersion")]
    pub _api_version: Option<IgnoredAny>,
    #[serde(rename = "kind")]
    pub _kind: Option<IgnoredAny>,
    #[serde(default)]
    pub metadata: StrictMeta,
    pub spec: Option<StagedNetworkPolicySpec>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StagedNetworkPolicySpec {
    pub staged_action: Option<String>,
    pub tier: Option<String>,
    pub order: Option<f64>,
    pub ingress: Option<Vec<CalicoRuleObj>>,
    pub egress: Option<Vec<CalicoRuleObj>>,
    pub selector: Option<String>,
    pub types: Option<Vec<String>>,
    pub service_account_selector: Option<String>,
    pub performance_hints: Option<Vec<String>>,
}

/// A Calico `StagedGlobalNetworkPolicy` (cluster-scoped): a GlobalNetworkPolicy's spec and `stagedAction`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StagedGlobalNetworkPolicyObj {
    #[serde(rename = "apiVersion")]
    pub _api_version: Option<IgnoredAny>,
    #[serde(rename = "kind")]
    pub _kind: Option<IgnoredAny>,
    #[serde(default)]
    pub metadata: StrictMeta,
    pub spec: Option<StagedGlobalNetworkPolicySpec>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StagedGlobalNetworkPolicySpec {
    pub staged_action: Option<String>,
    pub tier: Option<String>,
    pub order: Option<f64>,
    pub ingress: Option<Vec<CalicoRuleObj>>,
    pub egress: Option<Vec<CalicoRuleObj>>,
    pub selector: Option<String>,
    pub types: Option<Vec<String>>,
    pub do_not_track: Option<bool>,
    #[serde(rename = "preDNAT")]
    pub pre_dnat: Option<bool>,
    pub apply_on_forward: Option<bool>,
    pub service_account_selector: Option<String>,
    pub namespace_selector: Option<String>,
    pub performance_hints: Option<Vec<String>>,
}

/// A Calico `StagedKubernetesNetworkPolicy` (namespaced): a `networking.k8s.io/v1` NetworkPolicy's spec and
/// `stagedAction`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StagedKubernetesNetworkPolicyObj {
    #[serde(rename = "apiVersion")]
    pub _api_version: Option<IgnoredAny>,
    #[serde(rename = "kind")]
    pub _kind: Option<IgnoredAny>,
    #[serde(default)]
    pub metadata: StrictMeta,
    pub spec: Option<StagedKubernetesNetworkPolicySpec>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StagedKubernetesNetworkPolicySpec {
    pub staged_action: Option<String>,
    pub pod_selector: Option<LabelSelector>,
    pub ingress: Option<Vec<IngressRule>>,
    pub egress: Option<Vec<EgressRule>>,
    pub policy_types: Option<Vec<String>>,
}

/// A rule of either Calico policy kind.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CalicoRuleObj {
    pub action: Option<String>,
    pub ip_version: Option<i64>,
    pub protocol: Option<NumOrStr>,
    pub icmp: Option<IcmpFields>,
    pub not_protocol: Option<NumOrStr>,
    #[serde(rename = "notICMP")]
    pub not_icmp: Option<IcmpFields>,
    pub source: Option<EntityRuleObj>,
    pub destination: Option<EntityRuleObj>,
    pub http: Option<HttpMatch>,
    /// Annotations for people; type-checked, never read.
    #[serde(rename = "metadata")]
    pub _metadata: Option<RuleMetadata>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IcmpFields {
    #[serde(rename = "type")]
    pub type_: Option<i64>,
    pub code: Option<i64>,
}

/// `source` or `destination` of a Calico rule.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EntityRuleObj {
    pub nets: Option<Vec<String>>,
    pub selector: Option<String>,
    pub namespace_selector: Option<String>,
    pub services: Option<ServiceMatch>,
    pub ports: Option<Vec<NumOrStr>>,
    pub not_nets: Option<Vec<String>>,
    pub not_selector: Option<String>,
    pub not_ports: Option<Vec<NumOrStr>>,
    pub service_accounts: Option<ServiceAccountMatch>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceMatch {
    pub name: Option<String>,
    pub namespace: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceAccountMatch {
    pub names: Option<Vec<String>>,
    pub selector: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpMatch {
    pub methods: Option<Vec<String>>,
    pub paths: Option<Vec<HttpPath>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpPath {
    pub exact: Option<String>,
    pub prefix: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleMetadata {
    #[serde(rename = "annotations")]
    pub _annotations: Option<StrMap>,
}

/// A Calico `Tier` (cluster-scoped).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TierObj {
    #[serde(rename = "apiVersion")]
    pub _api_version: Option<IgnoredAny>,
    #[serde(rename = "kind")]
    pub _kind: Option<IgnoredAny>,
    #[serde(default)]
    pub metadata: StrictMeta,
    pub spec: Option<TierSpec>,
    /// Conditions written by Calico; never read.
    #[serde(rename = "status")]
    pub _status: Option<IgnoredAny>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TierSpec {
    pub order: Option<f64>,
    pub default_action: Option<String>,
}

/// A Calico `HostEndpoint` (cluster-scoped).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostEndpointObj {
    #[serde(rename = "apiVersion")]
    pub _api_version: Option<IgnoredAny>,
    #[serde(rename = "kind")]
    pub _kind: Option<IgnoredAny>,
    #[serde(default)]
    pub metadata: StrictMeta,
    pub spec: Option<HostEndpointSpec>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostEndpointSpec {
    pub node: Option<String>,
    pub interface_name: Option<String>,
    #[serde(rename = "expectedIPs")]
    pub expected_ips: Option<Vec<String>>,
    pub profiles: Option<Vec<String>>,
    pub ports: Option<Vec<EndpointPortObj>>,
    /// Calico's QoS controls (bandwidth, packet rates, connections): not about which traffic is allowed.
    #[serde(rename = "qosControls")]
    pub _qos_controls: Option<IgnoredAny>,
}

/// A named port of a Calico endpoint.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointPortObj {
    pub name: Option<String>,
    pub protocol: Option<NumOrStr>,
    pub port: Option<i64>,
}

/// Cilium's `CiliumCIDRGroup` (cluster-scoped, `cilium.io/v2` and `v2alpha1`): CIDRs outside the cluster that CIDR
/// rules name as one (`cidrGroupRef`, `cidrGroupSelector`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CiliumCidrGroupObj {
    #[serde(rename = "apiVersion")]
    pub _api_version: Option<IgnoredAny>,
    #[serde(rename = "kind")]
    pub _kind: Option<IgnoredAny>,
    #[serde(default)]
    pub metadata: StrictMeta,
    pub spec: Option<CiliumCidrGroupSpec>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CiliumCidrGroupSpec {
    #[serde(rename = "externalCIDRs")]
    pub external_cidrs: Option<Vec<String>>,
}

/// A Calico `NetworkSet` (namespaced) or `GlobalNetworkSet` (cluster-scoped): the same shape.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkSetObj {
    #[serde(rename = "apiVersion")]
    pub _api_version: Option<IgnoredAny>,
    #[serde(rename = "kind")]
    pub _kind: Option<IgnoredAny>,
    #[serde(default)]
    pub metadata: StrictMeta,
    pub spec: Option<NetworkSetSpec>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct NetworkSetSpec {
    pub nets: Option<Vec<String>>,
}

/// A ServiceAccount (`v1`): what netpol reads (name, namespace, labels); everything else is skipped.
#[derive(Deserialize)]
pub struct ServiceAccountObj {
    #[serde(default)]
    pub metadata: Meta,
}

/// Calico's `numorstring` fields (`protocol`, `ports`): a number (read wide, so that a value out of range gets
/// the range message) or a string, kept as written.
#[derive(Clone, Debug, PartialEq)]
pub enum NumOrStr {
    Num(i64),
    Str(String),
}

impl<'de> Deserialize<'de> for NumOrStr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = NumOrStr;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number or a string")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<NumOrStr, E> {
                Ok(NumOrStr::Num(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<NumOrStr, E> {
                i64::try_from(v)
                    .map(NumOrStr::Num)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &"a number or a string"))
            }
            fn visit_u128<E: de::Error>(self, v: u128) -> Result<NumOrStr, E> {
                Err(E::custom(format!("invalid value: integer `{v}`, expected a number or a string")))
            }
            fn visit_i128<E: de::Error>(self, v: i128) -> Result<NumOrStr, E> {
                Err(E::custom(format!("invalid value: integer `{v}`, expected a number or a string")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<NumOrStr, E> {
                Ok(NumOrStr::Str(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

// --- Nodes: what netpol reads (name, labels, addresses); everything else is skipped. ---

#[derive(Deserialize)]
pub struct NodeObj {
    #[serde(default)]
    pub metadata: Meta,
    pub status: Option<NodeStatus>,
}

#[derive(Deserialize)]
pub struct NodeStatus {
    pub addresses: Option<Vec<NodeAddress>>,
}

#[derive(Deserialize)]
pub struct NodeAddress {
    #[serde(rename = "type")]
    pub type_: String,
    pub address: String,
}

/// Rewrites serde's "unknown field `x`, expected one of ..." into a message with the closest known field.
pub fn unknown_field_message(msg: &str) -> Option<String> {
    let rest = msg.strip_prefix("unknown field `")?;
    let (field, rest) = rest.split_once('`')?;
    let known: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
    let mut out = format!("unknown field `{field}`");
    if let Some(best) = crate::suggest::closest(field, known.iter().copied()) {
        out.push_str(&format!(": did you mean `{best}`?"));
    }
    if !known.is_empty() {
        let list: Vec<String> = known.iter().map(|k| format!("`{k}`")).collect();
        out.push_str(&format!(" (known fields: {})", list.join(", ")));
    }
    Some(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_get_the_closest_known_field() {
        let m = unknown_field_message("unknown field `form`, expected `from` or `ports`").unwrap();
        assert_eq!(m, "unknown field `form`: did you mean `from`? (known fields: `from`, `ports`)");
        let m = unknown_field_message("unknown field `ingres`, expected one of `podSelector`, `ingress`, `egress`")
            .unwrap();
        assert!(m.contains("did you mean `ingress`?"), "{m}");
        let m = unknown_field_message("unknown field `zzz`, expected `from` or `ports`").unwrap();
        assert!(!m.contains("did you mean"), "{m}");
    }
}

/// A Cilium `CiliumNetworkPolicy` or `CiliumClusterwideNetworkPolicy` (`cilium.io/v2`): one rule in `spec`, more in
/// `specs` (pkg/k8s/apis/cilium.io/v2/cnp_types.go).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CiliumPolicyObj {
    #[serde(rename = "apiVersion")]
    pub _api_version: Option<IgnoredAny>,
    #[serde(rename = "kind")]
    pub _kind: Option<IgnoredAny>,
    #[serde(default)]
    pub metadata: StrictMeta,
    pub spec: Option<CiliumRule>,
    pub specs: Option<Vec<CiliumRule>>,
    #[serde(rename = "status")]
    pub _status: Option<IgnoredAny>,
}

/// `api.Rule` (pkg/policy/api/rule.go).
#[derive(Deserialize, Default)]
#[allow(dead_code)] // `labels`, `description` and `log` are decoded for their type check only
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CiliumRule {
    pub endpoint_selector: Option<LabelSelector>,
    pub node_selector: Option<LabelSelector>,
    pub ingress: Option<Vec<CiliumPeerRule>>,
    pub ingress_deny: Option<Vec<CiliumPeerRule>>,
    pub egress: Option<Vec<CiliumPeerRule>>,
    pub egress_deny: Option<Vec<CiliumPeerRule>>,
    pub labels: Option<IgnoredAny>,
    pub enable_default_deny: Option<CiliumDefaultDeny>,
    pub description: Option<String>,
    pub log: Option<IgnoredAny>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CiliumDefaultDeny {
    pub ingress: Option<bool>,
    pub egress: Option<bool>,
}

/// An ingress, ingressDeny, egress or egressDeny rule (pkg/policy/api/ingress.go, egress.go): the fields of all
/// four, so that one of another direction is reported by name (the lowering checks which fields the rule's kind
/// has).
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CiliumPeerRule {
    pub from_endpoints: Option<Vec<LabelSelector>>,
    pub from_requires: Option<Vec<LabelSelector>>,
    #[serde(rename = "fromCIDR")]
    pub from_cidr: Option<Vec<String>>,
    #[serde(rename = "fromCIDRSet")]
    pub from_cidr_set: Option<Vec<CiliumCidrRule>>,
    pub from_entities: Option<Vec<String>>,
    pub from_groups: Option<Vec<IgnoredAny>>,
    pub from_nodes: Option<Vec<LabelSelector>>,
    pub to_endpoints: Option<Vec<LabelSelector>>,
    pub to_requires: Option<Vec<LabelSelector>>,
    #[serde(rename = "toCIDR")]
    pub to_cidr: Option<Vec<String>>,
    #[serde(rename = "toCIDRSet")]
    pub to_cidr_set: Option<Vec<CiliumCidrRule>>,
    pub to_entities: Option<Vec<String>>,
    pub to_services: Option<Vec<CiliumService>>,
    pub to_groups: Option<Vec<IgnoredAny>>,
    pub to_nodes: Option<Vec<LabelSelector>>,
    #[serde(rename = "toFQDNs")]
    pub to_fqdns: Option<Vec<crate::l7::DnsSelector>>,
    pub to_ports: Option<Vec<CiliumPortRule>>,
    pub icmps: Option<Vec<CiliumIcmpRule>>,
    pub authentication: Option<IgnoredAny>,
}

/// `api.ICMPRule` (pkg/policy/api/icmp.go).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CiliumIcmpRule {
    pub fields: Option<Vec<CiliumIcmpField>>,
}

/// `api.ICMPField`: `type` a number or one of the family's type names.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CiliumIcmpField {
    pub family: Option<String>,
    #[serde(rename = "type")]
    pub icmp_type: Option<IntOrString>,
}

/// `api.CIDRRule` (pkg/policy/api/cidr.go).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CiliumCidrRule {
    pub cidr: Option<String>,
    pub cidr_group_ref: Option<String>,
    pub cidr_group_selector: Option<LabelSelector>,
    pub except: Option<Vec<String>>,
}

/// `api.PortRule` / `api.PortDenyRule` (pkg/policy/api/l4.go).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CiliumPortRule {
    pub ports: Option<Vec<CiliumPortProtocol>>,
    #[serde(rename = "terminatingTLS")]
    pub terminating_tls: Option<IgnoredAny>,
    #[serde(rename = "originatingTLS")]
    pub originating_tls: Option<IgnoredAny>,
    pub server_names: Option<IgnoredAny>,
    pub listener: Option<IgnoredAny>,
    pub rules: Option<CiliumL7Rules>,
}

/// `api.PortProtocol`: `port` is a string (a number, or a port name).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CiliumPortProtocol {
    pub port: Option<IntOrString>,
    pub end_port: Option<i32>,
    pub protocol: Option<String>,
}

/// `api.L7Rules`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CiliumL7Rules {
    pub http: Option<Vec<crate::l7::PortRuleHttp>>,
    pub kafka: Option<Vec<IgnoredAny>>,
    pub dns: Option<Vec<crate::l7::DnsSelector>>,
    pub l7proto: Option<String>,
    pub l7: Option<Vec<IgnoredAny>>,
}

/// `api.Service` (pkg/policy/api/service.go): one of `k8sService` and `k8sServiceSelector`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CiliumService {
    pub k8s_service: Option<CiliumServiceRef>,
    pub k8s_service_selector: Option<CiliumServiceSelector>,
}

/// `api.K8sServiceNamespace`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CiliumServiceRef {
    pub service_name: Option<String>,
    pub namespace: Option<String>,
}

/// `api.K8sServiceSelectorNamespace`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CiliumServiceSelector {
    pub selector: Option<LabelSelector>,
    pub namespace: Option<String>,
}

// --- Services and their endpoints (`v1` Service and Endpoints, `discovery.k8s.io/v1` EndpointSlice): what netpol
// reads (name, namespace, labels, the selector, the endpoints' addresses); everything else is skipped. ---

#[derive(Deserialize)]
pub struct ServiceObj {
    #[serde(default)]
    pub metadata: Meta,
    pub spec: Option<ServiceSpec>,
}

#[derive(Deserialize)]
pub struct ServiceSpec {
    pub selector: Option<StrMap>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointSliceObj {
    #[serde(default)]
    pub metadata: Meta,
    pub address_type: Option<String>,
    pub endpoints: Option<Vec<SliceEndpoint>>,
}

#[derive(Deserialize)]
pub struct SliceEndpoint {
    pub addresses: Option<Vec<String>>,
    pub conditions: Option<SliceConditions>,
}

#[derive(Deserialize)]
pub struct SliceConditions {
    pub ready: Option<bool>,
    pub serving: Option<bool>,
    pub terminating: Option<bool>,
}

#[derive(Deserialize)]
pub struct EndpointsObj {
    #[serde(default)]
    pub metadata: Meta,
    pub subsets: Option<Vec<EndpointSubset>>,
}

#[derive(Deserialize)]
pub struct EndpointSubset {
    pub addresses: Option<Vec<EndpointAddress>>,
}

#[derive(Deserialize)]
pub struct EndpointAddress {
    pub ip: Option<String>,
}
