//! The web UI of `netpol serve`: its static assets (embedded in the binary, served at `/` and `/ui/...`) and the
//! endpoints written for it.
//!
//! - `GET /api/v1/graph`: the connectivity graph on one port. Nodes group pods (pods with the same namespace
//!   and labels; coarser — by namespace and app label, then by namespace — when there are more than
//!   `max_nodes`); an edge says how many ordered pod pairs between two nodes are allowed. Edges are computed
//!   from the engine's class-level matrix ([`netpol_core::matrix`]): every (source class, destination class)
//!   cell is checked once and weighted by the pods it covers, never pod pair by pod pair.
//! - `POST /api/v1/graph/whatif`: the same graph before and after pasted policies of any tier (and deletions),
//!   edge by edge, with the connectivity diff; validation errors name the field and the line of the pasted text.
//! - `POST /api/v1/graph/flows`: a flow log over the graph: its observed connections judged by the loaded policies
//!   ([`netpol_input::replay`]) and mapped onto the graph's nodes, edge by edge, with what the log and the model
//!   say of them (the UI draws them, the denied ones red).
//! - `GET /api/v1/manifest`: a loaded policy as YAML in its own API's shape, for the what-if editor.
//!
//! The assets are plain ES modules, CSS and Canvas 2D: no npm build step, so `cargo build` alone produces the
//! binary. They are served with a restrictive Content-Security-Policy (same-origin scripts, styles and fetches
//! only; no inline code, no frames).

use std::cell::OnceCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::{Extension, Json};
use netpol_core::compile::{Engine, IdentityId};
use netpol_core::matrix::{Matrix, PsId};
use netpol_core::model::{
    Cluster, Direction, Peer, PodId, Policy, PolicyId, PolicyKind, PolicyTier, PortMatch, Rule, Scope,
};
use netpol_core::outside;
use netpol_core::portset::Protocol;
use netpol_core::selector::{check_label_key, check_label_value, Atom, Labels, Requirement, Selector};
use netpol_input::query::parse_port_proto;
use serde::Serialize;
use utoipa::ToSchema;

use crate::{AppState, Model, WhatIf};

/// Default largest number of nodes before the graph switches to a coarser grouping.
pub const DEFAULT_MAX_NODES: usize = 300;
/// Largest `max_nodes` a request may ask for.
pub const MAX_MAX_NODES: usize = 5000;
/// Pod names listed per node (the count is always exact).
pub const MAX_POD_NAMES: usize = 200;
/// Label keys that name a workload, most specific first: the "app" of the coarser grouping and a node's title.
pub const WORKLOAD_KEYS: [&str; 6] = ["app.kubernetes.io/name", "app", "k8s-app", "name", "component", "tier"];

/// Content-Security-Policy of the UI: everything from this origin only, nothing inline, no frames, no forms.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                       connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; \
                       frame-ancestors 'none'";

// ---- static assets ----

/// FNV-1a, at compile time: the ETag of an embedded asset.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        h ^= bytes[i] as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    h
}

fn asset_response(headers: &HeaderMap, content_type: &'static str, body: &'static [u8], etag: u64) -> Response {
    let etag = format!("\"{etag:016x}\"");
    let fresh = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).is_some_and(|v| {
        v.split(',').any(|t| {
            let t = t.trim();
            t == etag || t == "*" || t.strip_prefix("W/") == Some(etag.as_str())
        })
    });
    let mut res = if fresh { StatusCode::NOT_MODIFIED.into_response() } else { body.into_response() };
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Revalidate every time: the binary (and so the assets) may change between two visits.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    res
}

/// One handler per embedded asset, each documented in the OpenAPI document (which must cover every route).
macro_rules! assets {
    ($( $handler:ident: $path:tt => $file:tt, $ctype:tt, $what:tt; )*) => {
        $(
            #[doc = concat!("The web UI: ", $what, ".")]
            #[utoipa::path(get, path = $path, tag = "ui",
                responses((status = 200, description = $what, body = String, content_type = $ctype),
                          (status = 304, description = "not modified (`If-None-Match`)")))]
            pub async fn $handler(headers: HeaderMap) -> Response {
                const BODY: &[u8] = include_bytes!(concat!("../ui/", $file));
                const ETAG: u64 = fnv1a(BODY);
                asset_response(&headers, $ctype, BODY, ETAG)
            }
        )*

        /// (path, file) of every embedded asset.
        pub const ASSETS: &[(&str, &str)] = &[$( ($path, $file), )*];

        fn asset_routes() -> Vec<(Method, &'static str, MethodRouter<AppState>)> {
            vec![$( (Method::GET, $path, get($handler)), )*]
        }
    };
}

assets! {
    ui_index: "/" => "index.html", "text/html; charset=utf-8", "the page";
    ui_style: "/ui/style.css" => "style.css", "text/css; charset=utf-8", "the style sheet";
    ui_app: "/ui/app.js" => "app.js", "text/javascript; charset=utf-8", "the main ES module";
    ui_graph: "/ui/graph.js" => "graph.js", "text/javascript; charset=utf-8", "the graph layout and canvas view";
    ui_panels: "/ui/panels.js" => "panels.js", "text/javascript; charset=utf-8", "the side panels";
    ui_api: "/ui/api.js" => "api.js", "text/javascript; charset=utf-8", "the API client";
    ui_icon: "/ui/favicon.svg" => "favicon.svg", "image/svg+xml", "the icon";
}

/// The UI's routes (assets and endpoints), for `serve::route_table`.
pub fn route_table() -> Vec<(Method, &'static str, MethodRouter<AppState>)> {
    let mut v = asset_routes();
    v.push((Method::GET, "/api/v1/graph", get(graph_handler)));
    v.push((Method::POST, "/api/v1/graph/whatif", post(graph_whatif_handler)));
    v.push((Method::POST, "/api/v1/graph/flows", post(graph_flows_handler)));
    v.push((Method::GET, "/api/v1/manifest", get(manifest_handler)));
    v
}

// ---- errors and parameters ----

/// Error body of the UI endpoints: the API's error (`error`, `field`), plus where in a pasted text it is.
#[derive(Debug, Serialize, ToSchema)]
pub struct UiError {
    pub error: String,
    /// The parameter or part at fault (`port`, `selector`, `body`; in a pasted policy, the field path inside
    /// the document, such as `spec.ingress[0].ports[0].port`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// What-if: index of the pasted YAML document at fault (0-based).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub document: Option<usize>,
    /// What-if: 1-based line of the pasted text at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
}

#[derive(Debug)]
pub struct UiFailure(StatusCode, UiError);

impl UiFailure {
    fn new(status: StatusCode, field: &str, error: impl Into<String>) -> UiFailure {
        UiFailure(status, UiError { error: error.into(), field: Some(field.to_string()), document: None, line: None })
    }
    fn bad(field: &str, error: impl Into<String>) -> UiFailure {
        UiFailure::new(StatusCode::BAD_REQUEST, field, error)
    }
    fn internal(e: impl std::fmt::Display) -> UiFailure {
        UiFailure::new(StatusCode::INTERNAL_SERVER_ERROR, "server", e.to_string())
    }
}

impl IntoResponse for UiFailure {
    fn into_response(self) -> Response {
        crate::with_retry_after(self.0, (self.0, Json(self.1)).into_response())
    }
}

impl From<crate::Failure> for UiFailure {
    fn from(f: crate::Failure) -> UiFailure {
        UiFailure(f.0, UiError { error: f.1.error, field: f.1.field, document: None, line: None })
    }
}

impl From<crate::Cancelled> for UiFailure {
    fn from(_: crate::Cancelled) -> UiFailure {
        UiFailure::new(StatusCode::SERVICE_UNAVAILABLE, "server", "cancelled: the client closed the connection")
    }
}

type Params = Vec<(String, String)>;

fn parse_params(q: Option<&str>) -> Result<Params, UiFailure> {
    let q = q.unwrap_or("");
    let uri = format!("/?{q}").parse().map_err(|_| UiFailure::bad("query", "invalid query string"))?;
    axum::extract::Query::<Params>::try_from_uri(&uri)
        .map(|p| p.0)
        .map_err(|e| UiFailure::bad("query", format!("invalid query string: {e}")))
}

fn param<'a>(p: &'a Params, name: &str) -> Option<&'a str> {
    p.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
}

/// Parses a label selector in kubectl syntax: `app=web`, `app!=web`, `tier in (a,b)`, `tier notin (a)`, `app`,
/// `!app`, comma-separated (AND). Keys and values are checked as the API server checks labels.
pub fn parse_selector(s: &str) -> Result<Selector, String> {
    let mut terms = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.checked_sub(1).ok_or_else(|| format!("unbalanced `)` in `{s}`"))?,
            ',' if depth == 0 => {
                terms.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(format!("unbalanced `(` in `{s}`"));
    }
    terms.push(&s[start..]);
    let key = |k: &str| -> Result<Atom, String> {
        let k = k.trim();
        check_label_key(k).map_err(|e| format!("invalid label key `{k}`: {e}"))?;
        Ok(Atom::from(k))
    };
    let value = |v: &str| -> Result<Atom, String> {
        let v = v.trim();
        check_label_value(v).map_err(|e| format!("invalid label value `{v}`: {e}"))?;
        Ok(Atom::from(v))
    };
    let mut reqs = Vec::new();
    for t in terms.into_iter().map(str::trim) {
        if t.is_empty() {
            return Err(format!("empty requirement in `{s}`"));
        }
        let req = if let Some(k) = t.strip_prefix('!').filter(|k| !k.contains('=')) {
            Requirement::DoesNotExist(key(k)?)
        } else if let Some((k, v)) = t.split_once("!=") {
            Requirement::NotIn(key(k)?, vec![value(v)?])
        } else if let Some((k, v)) = t.split_once("==").or_else(|| t.split_once('=')) {
            Requirement::In(key(k)?, vec![value(v)?])
        } else if let Some(open) = t.find('(') {
            let (head, list) = t.split_at(open);
            let list = list.strip_prefix('(').and_then(|l| l.strip_suffix(')')).ok_or_else(|| {
                format!("invalid requirement `{t}`: expected `key in (v1,v2)` or `key notin (v1,v2)`")
            })?;
            let values = list.split(',').map(value).collect::<Result<Vec<_>, _>>()?;
            let mut words = head.split_whitespace();
            match (words.next(), words.next(), words.next()) {
                (Some(k), Some("in"), None) => Requirement::In(key(k)?, values),
                (Some(k), Some("notin"), None) => Requirement::NotIn(key(k)?, values),
                _ => return Err(format!("invalid requirement `{t}`: expected `key in (...)` or `key notin (...)`")),
            }
        } else {
            Requirement::Exists(key(t)?)
        };
        reqs.push(req);
    }
    Ok(Selector::from_requirements(reqs))
}

// ---- the graph ----

/// How pods are grouped into nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Grouping {
    /// Pods with the same namespace, labels and hostNetwork (a workload, normally).
    Labels,
    /// Pods with the same namespace and workload label (the first of [`WORKLOAD_KEYS`] they have).
    App,
    /// Pods of one namespace.
    Namespace,
}

impl Grouping {
    fn parse(s: &str) -> Option<Option<Grouping>> {
        match s {
            "auto" => Some(None),
            "labels" => Some(Some(Grouping::Labels)),
            "app" => Some(Some(Grouping::App)),
            "namespace" => Some(Some(Grouping::Namespace)),
            _ => None,
        }
    }
    fn coarser(self) -> Option<Grouping> {
        match self {
            Grouping::Labels => Some(Grouping::App),
            Grouping::App => Some(Grouping::Namespace),
            Grouping::Namespace => None,
        }
    }
}

/// Which pods the caller is interested in: nodes holding such pods, and the nodes they connect with.
#[derive(Clone, Debug, Default)]
pub struct Focus {
    pub namespace: Option<String>,
    pub selector: Option<Selector>,
}

/// What a graph request asks for.
#[derive(Clone, Debug)]
pub struct GraphOptions {
    pub port: u16,
    pub protocol: Protocol,
    pub focus: Focus,
    /// `None`: the finest grouping with at most `max_nodes` nodes.
    pub grouping: Option<Grouping>,
    pub max_nodes: usize,
}

/// Isolation of a node's pods in one direction.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct NodeIsolation {
    /// How many of the node's pods a policy of some tier applies to in this direction (0: none, `count`: all);
    /// the others allow everything.
    #[serde(rename = "isolatedPods")]
    pub isolated_pods: usize,
    /// How many of them a NetworkPolicy selects (NetworkPolicy isolation).
    #[serde(rename = "networkPolicyPods")]
    pub network_policy_pods: usize,
    /// The policies that apply to them (`namespace/name`, `cnp/name`, `anp/name`, `banp/name`), sorted.
    pub policies: Vec<String>,
    /// The same policies tier by tier (Admin, NetworkPolicy, Baseline), in evaluation order, each with how many of
    /// the node's pods it applies to.
    pub tiers: Vec<crate::TierPolicies>,
}

/// A node: a group of pods.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct GraphNode {
    /// Stable across ports and what-if requests (built from the namespace and the grouping key).
    pub id: String,
    pub namespace: String,
    /// A short title: the workload label's value, else the labels.
    pub name: String,
    /// Labels every pod of the node has.
    pub labels: BTreeMap<String, String>,
    /// Pod names (without namespace), sorted; at most 200 (see `count`).
    pub pods: Vec<String>,
    /// Number of pods.
    pub count: usize,
    /// Pods with hostNetwork (policies do not apply to them).
    #[serde(rename = "hostNetwork")]
    pub host_network: usize,
    /// Whether the node matches the request's namespace/selector (false: shown because it connects with one).
    pub focus: bool,
    pub ingress: NodeIsolation,
    pub egress: NodeIsolation,
    /// Connections from the node's pods to addresses outside the cluster on the requested port.
    #[serde(rename = "toOutside")]
    pub to_outside: OutsideAccess,
    /// Connections from addresses outside the cluster to the node's pods on the requested port.
    #[serde(rename = "fromOutside")]
    pub from_outside: OutsideAccess,
}

/// What a node's pods may exchange with addresses outside the cluster (addresses no pod has) on one port, in one
/// direction. Only the pods' own side decides: nothing outside the cluster enforces policies.
#[derive(Clone, Debug, Default, Serialize, ToSchema)]
pub struct OutsideAccess {
    /// Pods of the node allowed with at least one outside address.
    pub pods: usize,
    /// Pods of the node allowed with every outside address (not isolated in this direction, or a rule without
    /// peers).
    #[serde(rename = "anyPods")]
    pub any_pods: usize,
    /// The ipBlocks allowing the other pods (`CIDR`, or `CIDR except A, B`), sorted.
    pub blocks: Vec<String>,
    /// One allowed flow to explain: `[pod, address]` to the outside, `[address, pod]` from it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub example: Option<[String; 2]>,
}

/// Connectivity from one node to another on the requested port.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct GraphEdge {
    pub src: String,
    pub dst: String,
    /// Ordered pairs of distinct pods (source pod in `src`, destination pod in `dst`) that may connect.
    pub pairs: u64,
    /// All ordered pairs of distinct pods between the two nodes: `pairs == total` means every pod may.
    pub total: u64,
    /// One allowed pair (`namespace/pod`), to explain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub example: Option<[String; 2]>,
}

/// A container port of the cluster, with how many pods declare it: what the port picker offers.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct PortUse {
    /// `PORT/PROTOCOL`.
    pub port: String,
    /// The container port names used for it (`http`), sorted.
    pub names: Vec<String>,
    pub pods: usize,
}

/// The connectivity graph on one port.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct GraphResponse {
    pub port: u16,
    #[schema(value_type = String)]
    pub protocol: Protocol,
    /// The grouping used (the finest with at most `max_nodes` nodes, unless one was asked for).
    pub grouping: Grouping,
    /// Pods in the cluster.
    #[serde(rename = "totalPods")]
    pub total_pods: usize,
    /// Pods of focus nodes (all, without namespace/selector).
    #[serde(rename = "focusPods")]
    pub focus_pods: usize,
    /// Nodes sorted by namespace, name and id.
    pub nodes: Vec<GraphNode>,
    /// Edges with at least one allowed pair, at least one end in a focus node; sorted by source, destination.
    pub edges: Vec<GraphEdge>,
    /// Every namespace, sorted (for the namespace filter).
    pub namespaces: Vec<String>,
    /// Container ports, most used first (at most 40).
    pub ports: Vec<PortUse>,
    /// Time the server spent computing this answer (matrix and grouping), in milliseconds.
    #[serde(rename = "computeMs")]
    pub compute_ms: f64,
    /// The CNI whose reading the answers follow (the web UI shows it in its header).
    pub cni: crate::CniInfo,
}

/// The nodes of one grouping over one engine's identities.
struct Nodes {
    /// Node of each identity (`u32::MAX`: the identity has no pods).
    of_identity: Vec<u32>,
    /// Nodes in id order (sorted later for output).
    list: Vec<NodeAcc>,
}

struct NodeAcc {
    id: String,
    ns: String,
    title: String,
    identities: Vec<IdentityId>,
    count: usize,
    focus: bool,
}

fn workload_label(labels: &Labels) -> Option<(&str, &str)> {
    WORKLOAD_KEYS.iter().find_map(|k| labels.get(k).map(|v| (*k, v)))
}

fn labels_text(labels: &Labels) -> String {
    labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

fn identity_focus(e: &Engine, i: IdentityId, focus: &Focus) -> bool {
    let ident = &e.identity(i);
    focus.namespace.as_deref().is_none_or(|n| e.cluster().ns_name(ident.ns) == n)
        && focus.selector.as_ref().is_none_or(|s| s.matches(e.label_set(ident.labels)))
}

fn group(e: &Engine, grouping: Grouping, focus: &Focus) -> Nodes {
    let mut index: HashMap<String, u32> = HashMap::new();
    let mut list: Vec<NodeAcc> = Vec::new();
    let mut of_identity = vec![u32::MAX; e.identities().len()];
    for (i, ident) in e.identities().iter().enumerate() {
        if ident.pods.is_empty() {
            continue;
        }
        let ns = e.cluster().ns_name(ident.ns);
        let labels = e.label_set(ident.labels);
        let (id, title) = match grouping {
            Grouping::Labels => {
                let text = labels_text(labels);
                let host = if ident.host_network { " +hostNetwork" } else { "" };
                let title = match workload_label(labels) {
                    Some((_, v)) => v.to_string(),
                    None if labels.is_empty() => "(no labels)".to_string(),
                    None => text.clone(),
                };
                (format!("{ns}/{{{text}}}{host}"), format!("{title}{host}"))
            }
            Grouping::App => match workload_label(labels) {
                Some((k, v)) => (format!("{ns}/{k}={v}"), v.to_string()),
                None => (format!("{ns}/*"), "(no app label)".to_string()),
            },
            Grouping::Namespace => (ns.to_string(), ns.to_string()),
        };
        let n = *index.entry(id.clone()).or_insert_with(|| {
            list.push(NodeAcc { id, ns: ns.to_string(), title, identities: Vec::new(), count: 0, focus: false });
            (list.len() - 1) as u32
        });
        let node = &mut list[n as usize];
        node.identities.push(IdentityId::new(i));
        node.count += ident.pods.len();
        node.focus |= identity_focus(e, IdentityId::new(i), focus);
        of_identity[i] = n;
    }
    // Two nodes of a namespace with the same title: show their labels instead.
    let mut titles: HashMap<(String, String), usize> = HashMap::new();
    for n in &list {
        *titles.entry((n.ns.clone(), n.title.clone())).or_default() += 1;
    }
    for n in &mut list {
        if titles.get(&(n.ns.clone(), n.title.clone())).copied().unwrap_or(0) > 1 {
            if let Some(&first) = n.identities.first() {
                let labels = labels_text(e.label_set(e.identity(first).labels));
                n.title = if labels.is_empty() { "(no labels)".to_string() } else { labels };
            }
        }
    }
    Nodes { of_identity, list }
}

/// Allowed pod pairs between nodes, and an example pair per edge.
struct EdgeAcc {
    pairs: u64,
    example: Option<(PodId, PodId)>,
}

/// One side of a matrix class restricted to one node: the node, its pods in the class, the identities.
struct Part {
    node: u32,
    pods: u64,
    identities: Vec<IdentityId>,
}

fn parts(classes: &[Vec<IdentityId>], nodes: &Nodes, e: &Engine) -> Vec<Vec<Part>> {
    classes
        .iter()
        .map(|class| {
            let mut v: Vec<Part> = Vec::new();
            for &i in class {
                let node = nodes.of_identity[i.index()];
                if node == u32::MAX {
                    continue;
                }
                let pods = e.identity(i).pods.len() as u64;
                match v.iter_mut().find(|p| p.node == node) {
                    Some(p) => {
                        p.pods += pods;
                        p.identities.push(i);
                    }
                    None => v.push(Part { node, pods, identities: vec![i] }),
                }
            }
            v
        })
        .collect()
}

/// Two distinct pods, one from each list of identities, if there are any.
fn example(e: &Engine, src: &[IdentityId], dst: &[IdentityId]) -> Option<(PodId, PodId)> {
    for &a in src.iter().take(4) {
        let pa = *e.identity(a).pods.first()?;
        for &b in dst.iter().take(4) {
            let pods = &e.identity(b).pods;
            if let Some(&pb) = pods.iter().find(|&&p| p != pa) {
                return Some((pa, pb));
            }
        }
    }
    None
}

/// Edges between nodes on one port: every (source class, destination class) cell of the matrix is tested once
/// and weighted by the pods of each node in the two classes; pods paired with themselves are subtracted. Only
/// pairs with a focus node at one end are kept.
fn edges(e: &Engine, m: &mut Matrix, nodes: &Nodes, proto: Protocol, port: u16) -> BTreeMap<(u32, u32), EdgeAcc> {
    let focus: Vec<bool> = nodes.list.iter().map(|n| n.focus).collect();
    let src_parts = parts(&m.src_classes, nodes, e);
    let dst_parts = parts(&m.dst_classes, nodes, e);
    // Per destination class: (source class, node, pods) of the identities in it, whose self pairs the cells count.
    let mut self_pairs: Vec<Vec<(usize, u32, u64)>> = vec![Vec::new(); m.dst_classes.len()];
    for (d, class) in m.dst_classes.iter().enumerate() {
        for &i in class {
            let (Some(&s), node) = (m.src_class_of.get(&i), nodes.of_identity[i.index()]) else { continue };
            if node != u32::MAX {
                self_pairs[d].push((s as usize, node, e.identity(i).pods.len() as u64));
            }
        }
    }
    // 0: unknown, 1: denied, 2: allowed; per interned port set.
    let mut memo: Vec<u8> = Vec::new();
    let mut out: BTreeMap<(u32, u32), EdgeAcc> = BTreeMap::new();
    m.for_each_column(e, |d, col, ps| {
        if memo.len() < ps.len() {
            memo.resize(ps.len(), 0);
        }
        let mut allowed = |c: PsId| -> bool {
            let slot = &mut memo[c.index()];
            if *slot == 0 {
                *slot = if ps.get(c).contains(proto, port) { 2 } else { 1 };
            }
            *slot == 2
        };
        let dparts = &dst_parts[d];
        if dparts.is_empty() {
            return;
        }
        let dst_focus = dparts.iter().any(|p| focus[p.node as usize]);
        for (s, &c) in col.iter().enumerate() {
            let sparts = &src_parts[s];
            if sparts.is_empty() || (!dst_focus && !sparts.iter().any(|p| focus[p.node as usize])) || !allowed(c) {
                continue;
            }
            for a in sparts {
                for b in dparts {
                    if !focus[a.node as usize] && !focus[b.node as usize] {
                        continue;
                    }
                    let acc = out.entry((a.node, b.node)).or_insert(EdgeAcc { pairs: 0, example: None });
                    acc.pairs += a.pods * b.pods;
                    if acc.example.is_none() {
                        acc.example = example(e, &a.identities, &b.identities);
                    }
                }
            }
        }
        for &(s, node, pods) in &self_pairs[d] {
            if focus[node as usize] && col.get(s).is_some_and(|&c| allowed(c)) {
                if let Some(acc) = out.get_mut(&(node, node)) {
                    acc.pairs = acc.pairs.saturating_sub(pods);
                }
            }
        }
    });
    out.retain(|_, acc| acc.pairs > 0);
    out
}

fn isolation(e: &Engine, n: &NodeAcc, ingress: bool) -> NodeIsolation {
    let dir = if ingress { Direction::Ingress } else { Direction::Egress };
    let mut pods = 0;
    let mut np_pods = 0;
    let mut policies = BTreeSet::new();
    // Per policy, how many of the node's pods it applies to; then every policy in evaluation order.
    let mut counts: HashMap<PolicyId, usize> = HashMap::new();
    for &i in &n.identities {
        let ident = &e.identity(i);
        let pols = ident.policies(dir);
        if !pols.is_empty() {
            pods += ident.pods.len();
            policies.extend(pols.iter().map(|&p| e.cluster().policy_ref(p)));
            for &p in pols {
                *counts.entry(p).or_default() += ident.pods.len();
            }
        }
        if e.isolated(i, dir) {
            np_pods += ident.pods.len();
        }
    }
    let mut all: Vec<PolicyId> = counts.keys().copied().collect();
    all.sort_unstable();
    let mut tiers: Vec<crate::TierPolicies> = Vec::new();
    for p in e.evaluation_order(&all) {
        let tier = crate::tier_name(e.cluster(), e.cluster().policy(p).tier);
        let entry = crate::TierPolicy { pods: counts.get(&p).copied(), ..crate::tier_policy(e, p) };
        match tiers.last_mut() {
            Some(t) if t.tier == tier => t.policies.push(entry),
            _ => tiers.push(crate::TierPolicies { tier: tier.to_string(), policies: vec![entry] }),
        }
    }
    NodeIsolation { isolated_pods: pods, network_policy_pods: np_pods, policies: policies.into_iter().collect(), tiers }
}

/// The outside addresses an identity allows in `dir` on one port.
enum OutsideAllowed {
    /// Every address.
    Any,
    /// NetworkPolicy alone: the ipBlocks of the rules that allow the port (non-empty).
    Blocks(BTreeSet<netpol_core::compile::BlockId>),
    /// With admin tiers or Calico policies, whose rules also deny and pass: the segments the evaluator allows
    /// (sorted, disjoint `a..b` index ranges, non-empty).
    Segments(Vec<(usize, usize)>),
}

/// What identity `i` allows with outside addresses in `dir` on the port (`None`: no address). NetworkPolicy's
/// allowing ipBlocks are listed in their own words; an identity that an admin tier or a Calico policy governs in
/// `dir` (their rules also deny and pass, and Calico's match nets, network sets and protocols) gets the address
/// segments of the evaluator's fold ([`outside::allowed_port_runs`]).
fn outside_allowed(
    e: &Engine,
    i: IdentityId,
    dir: Direction,
    proto: Protocol,
    port: u16,
    segs: &OnceCell<outside::Segments>,
) -> Option<OutsideAllowed> {
    let exact = e.identity(i).policies(dir).iter().any(|&p| {
        let pol = e.cluster().policy(p);
        pol.tier != PolicyTier::NetworkPolicy || pol.kind != PolicyKind::NetworkPolicy
    });
    if !exact {
        return match outside::allowing_blocks(e, i, dir, proto, port) {
            None => Some(OutsideAllowed::Any),
            Some(b) if b.is_empty() => None,
            Some(b) => Some(OutsideAllowed::Blocks(b)),
        };
    }
    let segs = segs.get_or_init(|| outside::Segments::new(&[e]));
    let runs = outside::allowed_port_runs(e, i, dir, segs);
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    for (k, (start, _)) in runs.iter().enumerate().filter(|(_, r)| r.1.contains(proto, port)) {
        let end = runs.get(k + 1).map_or(segs.len(), |r| r.0);
        match ranges.last_mut() {
            Some(last) if last.1 == *start => last.1 = end,
            _ => ranges.push((*start, end)),
        }
    }
    match ranges.as_slice() {
        [] => None,
        [(0, end)] if *end >= segs.len() => Some(OutsideAllowed::Any),
        _ => Some(OutsideAllowed::Segments(ranges)),
    }
}

fn outside_access(
    e: &Engine,
    n: &NodeAcc,
    dir: Direction,
    proto: Protocol,
    port: u16,
    segs: &OnceCell<outside::Segments>,
) -> OutsideAccess {
    let mut out = OutsideAccess::default();
    let mut texts = BTreeSet::new();
    for &i in &n.identities {
        let ident = &e.identity(i);
        let Some(allowed) = outside_allowed(e, i, dir, proto, port, segs) else { continue };
        match &allowed {
            OutsideAllowed::Any => out.any_pods += ident.pods.len(),
            OutsideAllowed::Blocks(b) => texts.extend(b.iter().map(|b| e.blocks()[b.index()].to_string())),
            OutsideAllowed::Segments(r) => texts.extend(segs.get().map(|s| s.text_ranges(r)).unwrap_or_default()),
        }
        out.pods += ident.pods.len();
        if out.example.is_none() {
            let pod = ident.pods.iter().copied().min_by_key(|&p| &e.cluster().pod(p).name);
            let ip = pod.and_then(|p| example_address(e, p, &allowed, dir, proto, port, segs).map(|ip| (p, ip)));
            out.example = ip.map(|(p, ip)| {
                let (p, ip) = (e.cluster().pod_ref(p), ip.to_string());
                match dir {
                    Direction::Egress => [p, ip],
                    Direction::Ingress => [ip, p],
                }
            });
        }
    }
    out.blocks = texts.into_iter().collect();
    out
}

/// An outside address `pod` may exchange traffic with (the engine allows it): a documentation address, else one
/// of the allowed blocks or segments.
fn example_address(
    e: &Engine,
    pod: PodId,
    allowed: &OutsideAllowed,
    dir: Direction,
    proto: Protocol,
    port: u16,
    segs: &OnceCell<outside::Segments>,
) -> Option<std::net::IpAddr> {
    let blocks = match allowed {
        OutsideAllowed::Blocks(b) => Some(b),
        _ => None,
    };
    outside::example_address(e, pod, blocks, dir, proto, port).or_else(|| {
        let (OutsideAllowed::Segments(ranges), Some(segs)) = (allowed, segs.get()) else { return None };
        let me = netpol_core::compile::Endpoint::Pod { pod, ip: None };
        ranges.iter().take(16).filter_map(|&(a, _)| segs.outside_address(a, &[e])).find(|&ip| {
            let other = e.endpoint_for_ip(ip);
            match dir {
                Direction::Egress => e.allowed(&me, &other, proto, port),
                Direction::Ingress => e.allowed(&other, &me, proto, port),
            }
        })
    })
}

fn node_out(e: &Engine, n: &NodeAcc, proto: Protocol, port: u16, segs: &OnceCell<outside::Segments>) -> GraphNode {
    let mut pods: Vec<&str> = Vec::with_capacity(n.count.min(MAX_POD_NAMES));
    let mut common: Option<Labels> = None;
    let mut host = 0;
    for &i in &n.identities {
        let ident = &e.identity(i);
        pods.extend(ident.pods.iter().map(|&p| e.cluster().pod(p).name.as_str()));
        if ident.host_network {
            host += ident.pods.len();
        }
        let labels = e.label_set(ident.labels);
        common = Some(match common {
            None => labels.clone(),
            Some(c) => c.iter().filter(|&(k, v)| labels.get(k) == Some(v)).collect(),
        });
    }
    pods.sort_unstable();
    pods.truncate(MAX_POD_NAMES);
    GraphNode {
        id: n.id.clone(),
        namespace: n.ns.clone(),
        name: n.title.clone(),
        labels: common.unwrap_or_default().to_map(),
        pods: pods.into_iter().map(str::to_string).collect(),
        count: n.count,
        host_network: host,
        focus: n.focus,
        ingress: isolation(e, n, true),
        egress: isolation(e, n, false),
        to_outside: outside_access(e, n, Direction::Egress, proto, port, segs),
        from_outside: outside_access(e, n, Direction::Ingress, proto, port, segs),
    }
}

/// The graph of one engine with one grouping: nodes (focus nodes and their neighbours) and edges, by node id.
struct Computed {
    nodes: BTreeMap<String, GraphNode>,
    edges: BTreeMap<(String, String), GraphEdge>,
}

fn compute(e: &Engine, m: &mut Matrix, grouping: Grouping, opts: &GraphOptions) -> Computed {
    let nodes = group(e, grouping, &opts.focus);
    let raw = edges(e, m, &nodes, opts.protocol, opts.port);
    let mut shown: BTreeSet<u32> =
        nodes.list.iter().enumerate().filter(|(_, n)| n.focus).map(|(i, _)| i as u32).collect();
    for &(a, b) in raw.keys() {
        shown.insert(a);
        shown.insert(b);
    }
    // The address segments, made once and only if an admin tier governs a node's pods.
    let segs = OnceCell::new();
    let out_nodes = shown
        .iter()
        .map(|&i| &nodes.list[i as usize])
        .map(|n| (n.id.clone(), node_out(e, n, opts.protocol, opts.port, &segs)))
        .collect();
    let edges = raw
        .into_iter()
        .map(|((a, b), acc)| {
            let (na, nb) = (&nodes.list[a as usize], &nodes.list[b as usize]);
            let (ca, cb) = (na.count as u64, nb.count as u64);
            let total = if a == b { ca * ca.saturating_sub(1) } else { ca * cb };
            let example = acc.example.map(|(p, q)| [e.cluster().pod_ref(p), e.cluster().pod_ref(q)]);
            (
                (na.id.clone(), nb.id.clone()),
                GraphEdge { src: na.id.clone(), dst: nb.id.clone(), pairs: acc.pairs, total, example },
            )
        })
        .collect();
    Computed { nodes: out_nodes, edges }
}

/// The finest grouping whose focus nodes fit `max_nodes` (the coarsest if none does).
fn auto_grouping(e: &Engine, focus: &Focus, max_nodes: usize) -> Grouping {
    let mut g = Grouping::Labels;
    loop {
        let n = group(e, g, focus).list.iter().filter(|n| n.focus).count();
        match g.coarser() {
            Some(next) if n > max_nodes => g = next,
            _ => return g,
        }
    }
}

/// Chooses the grouping (when not given) and computes the graph; with auto grouping, a graph whose focus nodes
/// and neighbours exceed `max_nodes` is recomputed one grouping coarser.
fn compute_graph(e: &Engine, m: &mut Matrix, opts: &GraphOptions) -> (Grouping, Computed) {
    let Some(g) = opts.grouping else {
        let mut g = auto_grouping(e, &opts.focus, opts.max_nodes);
        loop {
            let c = compute(e, m, g, opts);
            match g.coarser() {
                Some(next) if c.nodes.len() > opts.max_nodes => g = next,
                _ => return (g, c),
            }
        }
    };
    (g, compute(e, m, g, opts))
}

fn port_uses(e: &Engine) -> Vec<PortUse> {
    let mut uses: BTreeMap<(Protocol, u16), (usize, BTreeSet<String>)> = BTreeMap::new();
    for ident in e.identities() {
        for cp in &ident.ports {
            let u = uses.entry((cp.protocol, cp.port)).or_default();
            u.0 += ident.pods.len();
            if let Some(n) = &cp.name {
                u.1.insert(n.to_string());
            }
        }
    }
    let mut v: Vec<_> = uses.into_iter().collect();
    v.sort_by(|(ka, (na, _)), (kb, (nb, _))| nb.cmp(na).then(ka.cmp(kb)));
    v.into_iter()
        .take(40)
        .map(|((proto, port), (pods, names))| PortUse {
            port: format!("{port}/{proto}"),
            names: names.into_iter().collect(),
            pods,
        })
        .collect()
}

fn namespaces(e: &Engine) -> Vec<String> {
    let mut v: Vec<String> = e.cluster().namespaces.iter().map(|n| n.name.clone()).collect();
    v.sort();
    v
}

/// The graph on one port (see [`GraphResponse`]).
pub fn graph(e: &Engine, opts: &GraphOptions) -> Result<GraphResponse, String> {
    let t = Instant::now();
    let mut m = e.matrix(None)?;
    let (grouping, c) = compute_graph(e, &mut m, opts);
    let focus_pods = c.nodes.values().filter(|n| n.focus).map(|n| n.count).sum();
    Ok(GraphResponse {
        port: opts.port,
        protocol: opts.protocol,
        grouping,
        total_pods: e.identities().iter().map(|i| i.pods.len()).sum(),
        focus_pods,
        nodes: sorted_nodes(c.nodes),
        edges: c.edges.into_values().collect(),
        namespaces: namespaces(e),
        ports: port_uses(e),
        compute_ms: t.elapsed().as_secs_f64() * 1000.0,
        cni: crate::CniInfo::of(e),
    })
}

fn sorted_nodes(nodes: BTreeMap<String, GraphNode>) -> Vec<GraphNode> {
    let mut v: Vec<GraphNode> = nodes.into_values().collect();
    v.sort_by(|a, b| (&a.namespace, &a.name, &a.id).cmp(&(&b.namespace, &b.name, &b.id)));
    v
}

/// The most declared container port (80/TCP when no pod declares one): the default of the graph.
fn default_port(e: &Engine) -> (u16, Protocol) {
    port_uses(e).first().and_then(|u| parse_port_proto(&u.port).ok()).unwrap_or((80, Protocol::Tcp))
}

fn graph_options(e: &Engine, p: &Params) -> Result<GraphOptions, UiFailure> {
    let (port, protocol) = match param(p, "port") {
        Some(s) => parse_port_proto(s).map_err(|err| UiFailure::bad("port", err))?,
        None if p.iter().any(|(k, _)| k == "port") => {
            return Err(UiFailure::bad("port", "empty `port`: give PORT or PORT/PROTOCOL"))
        }
        None => default_port(e),
    };
    let namespace = param(p, "namespace").map(str::to_string);
    if let Some(n) = &namespace {
        if e.cluster().namespace_id(n).is_none() {
            return Err(UiFailure::new(StatusCode::NOT_FOUND, "namespace", format!("unknown namespace `{n}`")));
        }
    }
    let selector = match param(p, "selector") {
        Some(s) => Some(parse_selector(s).map_err(|err| UiFailure::bad("selector", err))?),
        None => None,
    };
    let grouping = match param(p, "group") {
        None => None,
        Some(g) => Grouping::parse(g).ok_or_else(|| {
            UiFailure::bad("group", format!("invalid `group` value `{g}`: auto, labels, app or namespace"))
        })?,
    };
    let max_nodes = match param(p, "max_nodes") {
        None => DEFAULT_MAX_NODES,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=MAX_MAX_NODES).contains(&n) => n,
            _ => {
                return Err(UiFailure::bad(
                    "max_nodes",
                    format!("invalid `max_nodes` value `{v}`: an integer from 1 to {MAX_MAX_NODES}"),
                ))
            }
        },
    };
    Ok(GraphOptions { port, protocol, focus: Focus { namespace, selector }, grouping, max_nodes })
}

/// The connectivity graph on one port, for the web UI: nodes group pods, edges count allowed pod pairs.
///
/// Nodes are pods with the same namespace and labels; when there are more than `max_nodes`, pods are grouped
/// by namespace and workload label, then by namespace (`grouping` says which). With `namespace` or `selector`,
/// only nodes holding matching pods (`focus`) and the nodes they connect with are returned.
#[utoipa::path(get, path = "/api/v1/graph", tag = "ui",
    params(
        ("port" = Option<String>, Query, description = "`PORT` or `PORT/PROTOCOL` (default: the container port most pods declare)"),
        ("namespace" = Option<String>, Query, description = "focus on the pods of this namespace"),
        ("selector" = Option<String>, Query, description = "focus on pods matching this label selector (kubectl syntax: `app=web,tier in (a,b)`)"),
        ("group" = Option<String>, Query, description = "`auto` (default), `labels`, `app` or `namespace`"),
        ("max_nodes" = Option<usize>, Query, description = "largest node count before auto grouping gets coarser (default 300, at most 5000)"),
    ),
    responses(
        (status = 200, description = "the graph", body = GraphResponse),
        (status = 400, description = "invalid port, selector, group or max_nodes", body = UiError),
        (status = 404, description = "unknown namespace", body = UiError),
    ))]
pub async fn graph_handler(
    Extension(model): Extension<Arc<Model>>,
    uri_query: axum::extract::RawQuery,
) -> Result<Json<GraphResponse>, UiFailure> {
    let p = parse_params(uri_query.0.as_deref())?;
    let task = tokio::task::spawn_blocking(move || -> Result<GraphResponse, UiFailure> {
        let opts = graph_options(&model.engine, &p)?;
        graph(&model.engine, &opts).map_err(|err| UiFailure::new(StatusCode::NOT_FOUND, "namespace", err))
    });
    task.await.map_err(UiFailure::internal)?.map(Json)
}

// ---- what-if on the graph ----

/// How an edge changes with the pasted policies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EdgeChange {
    /// No pair was allowed before; some are now.
    Added,
    /// Some pairs were allowed before; none are now.
    Removed,
    /// Allowed before and after, for a different number of pairs.
    Changed,
    Unchanged,
}

/// An edge before and after the what-if changes.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct WhatIfEdge {
    pub src: String,
    pub dst: String,
    pub total: u64,
    /// Allowed pairs before.
    pub before: u64,
    /// Allowed pairs after.
    pub after: u64,
    pub change: EdgeChange,
    /// An allowed pair after (or before, for a removed edge).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub example: Option<[String; 2]>,
}

/// A pasted object (a policy, or a Calico Tier or network set), as it would be applied.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct AppliedPolicy {
    /// How the answers name it: `namespace/name` for a NetworkPolicy, `cnp/name`, `anp/name` or `banp/name` for a
    /// cluster-scoped admin policy, `gnp/name`, `caliconetworkpolicy/namespace/name` for Calico's policies;
    /// `tier/name`, `networkset/namespace/name`, `globalnetworkset/name` for Calico's other objects.
    pub policy: String,
    /// `NetworkPolicy`, `ClusterNetworkPolicy`, `AdminNetworkPolicy`, `BaselineAdminNetworkPolicy`,
    /// `NetworkPolicy.projectcalico.org`, `GlobalNetworkPolicy`, `Tier`, `NetworkSet` or `GlobalNetworkSet`.
    pub kind: String,
    /// A policy's tier (`Admin`, `NetworkPolicy`, `Baseline`, or Calico's tiers); a Tier's own name; empty for a
    /// network set.
    pub tier: String,
    /// Whether it replaces a loaded object of the same kind and name (and namespace); for a Tier, a loaded Tier
    /// object of its name.
    pub replaces: bool,
    /// Pods it would select (a Tier: pods its policies select; a network set: 0).
    #[serde(rename = "selectedPods")]
    pub selected_pods: usize,
}

/// The graph before and after the pasted policies, edge by edge, and the connectivity diff.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct GraphWhatIfResponse {
    pub port: u16,
    #[schema(value_type = String)]
    pub protocol: Protocol,
    pub grouping: Grouping,
    /// Nodes of both graphs (isolation after the changes), sorted by namespace, name and id.
    pub nodes: Vec<GraphNode>,
    /// Edges allowed before or after, sorted by source and destination.
    pub edges: Vec<WhatIfEdge>,
    pub applied: Vec<AppliedPolicy>,
    /// The deleted policies, as given (`namespace/name`, `cnp/name`, ...).
    pub deleted: Vec<String>,
    /// The connectivity delta on every port, as `POST /api/v1/whatif` returns it.
    #[schema(value_type = Object)]
    pub diff: netpol_core::diff::Diff,
    #[serde(rename = "computeMs")]
    pub compute_ms: f64,
}

/// Where an object is in the pasted text: (document, List item).
type Place = (usize, Option<usize>);

/// Reads the pasted text: YAML documents (or JSON) holding policies or `kind: List`s of them. Returns
/// the objects and, for each, its place in the text.
fn pasted_objects(text: &str) -> Result<(Vec<serde_json::Value>, Vec<Place>), UiFailure> {
    let mut objects = Vec::new();
    let mut at = Vec::new();
    // JSON is read by serde_json; YAML as manifests are read (linear time, nesting limited to 128).
    let json = match crate::looks_like_json(text) {
        true => serde_json::from_str::<serde_json::Value>(text).ok(),
        false => None,
    };
    let docs = match json {
        Some(v) => vec![Ok(v)],
        None => netpol_core::load::yaml_documents(text),
    };
    for (doc, v) in docs.into_iter().enumerate() {
        let v = v.map_err(|err| {
            UiFailure(
                StatusCode::BAD_REQUEST,
                UiError {
                    error: format!("invalid YAML: {}", err.message),
                    field: Some("body".to_string()),
                    document: Some(doc),
                    line: err.line,
                },
            )
        })?;
        match v {
            serde_json::Value::Null => {}
            serde_json::Value::Object(ref o) if o.get("kind").and_then(|k| k.as_str()) == Some("List") => {
                let items = o.get("items").and_then(|i| i.as_array()).cloned().unwrap_or_default();
                for (k, item) in items.into_iter().enumerate() {
                    objects.push(item);
                    at.push((doc, Some(k)));
                }
            }
            v => {
                objects.push(v);
                at.push((doc, None));
            }
        }
    }
    Ok((objects, at))
}

/// `apply[3].spec.ingress[0]` → (3, `spec.ingress[0]`).
fn split_apply_field(field: &str) -> Option<(usize, Option<&str>)> {
    let rest = field.strip_prefix("apply[")?;
    let (n, rest) = rest.split_once(']')?;
    let n = n.parse().ok()?;
    Some((n, rest.strip_prefix('.').filter(|r| !r.is_empty())))
}

/// The engine with the pasted policies applied and `delete` removed, or the error located in the text.
fn what_if_engine(base: &Cluster, text: &str, delete: Vec<String>) -> Result<(Engine, Vec<AppliedPolicy>), UiFailure> {
    let (objects, at) = pasted_objects(text)?;
    // How the answers will name each pasted object (`ns/name`, `cnp/name`, `tier/name`, ...), with what it is.
    let refs: Vec<Option<(String, crate::Applicable)>> = objects.iter().map(crate::applied_reference).collect();
    let req = WhatIf { apply: objects, delete };
    let cluster = crate::what_if_cluster(base, req).map_err(|f| {
        let crate::Failure(status, err) = f;
        let field = err.field.unwrap_or_default();
        match split_apply_field(&field) {
            Some((i, inner)) => {
                let (document, item) = at.get(i).copied().unwrap_or((0, None));
                let line = netpol_input::locate::find_line(text, document, item, inner);
                UiFailure(
                    status,
                    UiError {
                        error: err.error,
                        field: Some(inner.unwrap_or("").to_string()).filter(|f| !f.is_empty()),
                        document: Some(document),
                        line,
                    },
                )
            }
            None => UiFailure(status, UiError { error: err.error, field: Some(field), document: None, line: None }),
        }
    })?;
    let engine = Engine::with_cni(cluster, netpol_input::cni());
    let c = engine.cluster();
    let mut selected: HashMap<PolicyId, usize> = HashMap::new();
    // Pods per tier name: those some policy of the tier selects.
    let mut tier_pods: HashMap<&str, usize> = HashMap::new();
    for ident in engine.identities() {
        let mut pols: Vec<PolicyId> = ident.ingress_policies.iter().chain(&ident.egress_policies).copied().collect();
        pols.sort_unstable();
        pols.dedup();
        let mut tiers: BTreeSet<&str> = BTreeSet::new();
        for p in pols {
            *selected.entry(p).or_default() += ident.pods.len();
            tiers.insert(crate::tier_name(c, c.policy(p).tier));
        }
        for t in tiers {
            *tier_pods.entry(t).or_default() += ident.pods.len();
        }
    }
    let mut applied = Vec::new();
    let mut seen = BTreeSet::new();
    for (r, what) in refs.into_iter().flatten() {
        if !seen.insert(r.clone()) {
            continue;
        }
        let entry = match what {
            crate::Applicable::Policy(kind) => {
                let id = c.find_policy(&r);
                AppliedPolicy {
                    selected_pods: id.and_then(|i| selected.get(&i).copied()).unwrap_or(0),
                    kind: kind.as_str().to_string(),
                    tier: id.map(|i| crate::tier_name(c, c.policy(i).tier).to_string()).unwrap_or_default(),
                    replaces: base.find_policy(&r).is_some(),
                    policy: r,
                }
            }
            crate::Applicable::Tier => {
                let name = r.strip_prefix("tier/").unwrap_or(&r).to_string();
                AppliedPolicy {
                    selected_pods: tier_pods.get(name.as_str()).copied().unwrap_or(0),
                    kind: "Tier".to_string(),
                    replaces: base.tiers.iter().any(|t| t.name == name && t.origin.is_some()),
                    tier: name,
                    policy: r,
                }
            }
            crate::Applicable::AntreaObject => {
                let (kind, tier) = match r.split_once('/') {
                    Some(("antreatier", name)) => ("Tier", name.to_string()),
                    Some(("clustergroup", _)) => ("ClusterGroup", String::new()),
                    _ => ("Group", String::new()),
                };
                let same = |o: &&netpol_core::model::AntreaObject| {
                    let name = match o.namespace() {
                        Some(ns) => format!("{ns}/{}", o.name()),
                        None => o.name().to_string(),
                    };
                    o.kind() == kind && r.ends_with(&format!("/{name}"))
                };
                AppliedPolicy {
                    selected_pods: tier_pods.get(tier.as_str()).copied().unwrap_or(0),
                    kind: kind.to_string(),
                    replaces: base.antrea.iter().any(|o| same(&o)),
                    tier,
                    policy: r,
                }
            }
            crate::Applicable::NetworkSet { global } => {
                let kind = if global { "GlobalNetworkSet" } else { "NetworkSet" };
                let name_of = |s: &netpol_core::model::NetworkSet| match s.ns {
                    Some(ns) => format!("networkset/{}/{}", base.ns_name(ns), s.name),
                    None => format!("globalnetworkset/{}", s.name),
                };
                AppliedPolicy {
                    selected_pods: 0,
                    kind: kind.to_string(),
                    tier: String::new(),
                    replaces: base.network_sets.iter().any(|s| name_of(s) == r),
                    policy: r,
                }
            }
        };
        applied.push(entry);
    }
    Ok((engine, applied))
}

/// The graph what-if; `job.check()` between its phases stops it once the client is gone.
fn graph_what_if(
    old: &Engine,
    text: &str,
    delete: Vec<String>,
    opts: &GraphOptions,
    job: &crate::Job,
) -> Result<GraphWhatIfResponse, UiFailure> {
    let t = Instant::now();
    let (new, applied) = what_if_engine(old.cluster(), text, delete.clone())?;
    job.check()?;
    let nf = |err: String| UiFailure::new(StatusCode::NOT_FOUND, "namespace", err);
    let mut m_old = old.matrix(None).map_err(nf)?;
    job.check()?;
    let (grouping, before) = compute_graph(old, &mut m_old, opts);
    drop(m_old);
    job.check()?;
    let mut m_new = new.matrix(None).map_err(nf)?;
    job.check()?;
    let after = compute(&new, &mut m_new, grouping, opts);
    drop(m_new);
    job.check()?;
    let mut nodes = before.nodes;
    nodes.extend(after.nodes);
    let keys: BTreeSet<&(String, String)> = before.edges.keys().chain(after.edges.keys()).collect();
    let edges = keys
        .into_iter()
        .map(|k| {
            let (b, a) = (before.edges.get(k), after.edges.get(k));
            let (pb, pa) = (b.map_or(0, |x| x.pairs), a.map_or(0, |x| x.pairs));
            let change = match (pb, pa) {
                (0, _) => EdgeChange::Added,
                (_, 0) => EdgeChange::Removed,
                (x, y) if x != y => EdgeChange::Changed,
                _ => EdgeChange::Unchanged,
            };
            let total = a.or(b).map_or(0, |x| x.total);
            let example = a.and_then(|x| x.example.clone()).or_else(|| b.and_then(|x| x.example.clone()));
            WhatIfEdge { src: k.0.clone(), dst: k.1.clone(), total, before: pb, after: pa, change, example }
        })
        .collect();
    let diff = netpol_core::diff::diff(old, &new, &netpol_core::diff::DiffOptions::default());
    job.check()?;
    Ok(GraphWhatIfResponse {
        port: opts.port,
        protocol: opts.protocol,
        grouping,
        nodes: sorted_nodes(nodes),
        edges,
        applied,
        deleted: delete,
        diff,
        compute_ms: t.elapsed().as_secs_f64() * 1000.0,
    })
}

/// What-if on the graph: the edges before and after pasted policies, without applying them.
///
/// The body is the editor's text: YAML documents (or JSON) holding policies of any tier — NetworkPolicy,
/// ClusterNetworkPolicy, AdminNetworkPolicy, BaselineAdminNetworkPolicy — or `kind: List`s of them; one with the
/// kind and name (and namespace) of a loaded policy replaces it. `delete` (repeatable) removes loaded policies
/// (`namespace/name`, `cnp/name`, `anp/name`, `banp/name`). Every edge
/// allowed before or after comes back with its pair counts before and after and its change; `diff` is the
/// connectivity delta on every port (as `POST /api/v1/whatif`). An invalid policy gets 422 with the field path
/// inside its document, the document index and the line of the text.
#[utoipa::path(post, path = "/api/v1/graph/whatif", tag = "ui",
    params(
        ("port" = Option<String>, Query, description = "`PORT` or `PORT/PROTOCOL` (default: the container port most pods declare)"),
        ("namespace" = Option<String>, Query, description = "focus on the pods of this namespace"),
        ("selector" = Option<String>, Query, description = "focus on pods matching this label selector"),
        ("group" = Option<String>, Query, description = "`auto` (default), `labels`, `app` or `namespace`"),
        ("max_nodes" = Option<usize>, Query, description = "largest node count before auto grouping gets coarser"),
        ("delete" = Option<Vec<String>>, Query, description = "a loaded policy to delete (repeatable): `namespace/name`, or `cnp/name`, `anp/name`, `banp/name`"),
    ),
    request_body(description = "policy manifests of any tier (YAML documents or JSON)", content_type = "application/yaml", content = String),
    responses(
        (status = 200, description = "the edges before and after", body = GraphWhatIfResponse),
        (status = 400, description = "invalid parameter or YAML", body = UiError),
        (status = 404, description = "unknown namespace, or a policy to delete does not exist", body = UiError),
        (status = 413, description = "body larger than the limit", body = UiError),
        (status = 422, description = "a pasted policy is invalid (field, document, line)", body = UiError),
    ))]
pub async fn graph_whatif_handler(
    State(state): State<AppState>,
    Extension(model): Extension<Arc<Model>>,
    uri_query: axum::extract::RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<GraphWhatIfResponse>, UiFailure> {
    let p = parse_params(uri_query.0.as_deref())?;
    let body = body.map_err(|r| {
        let status = r.status();
        let msg =
            if status == StatusCode::PAYLOAD_TOO_LARGE { "request body too large".to_string() } else { r.body_text() };
        UiFailure::new(status, "body", msg)
    })?;
    let text = String::from_utf8(body.to_vec()).map_err(|_| UiFailure::bad("body", "body is not UTF-8"))?;
    let delete: Vec<String> = p.iter().filter(|(k, _)| k == "delete").map(|(_, v)| v.clone()).collect();
    let (job, _cancel) = state
        .begin_expensive()
        .map_err(|b| UiFailure::new(StatusCode::SERVICE_UNAVAILABLE, "server", b.message(state.expensive_slots())))?;
    let task = tokio::task::spawn_blocking(move || -> Result<GraphWhatIfResponse, UiFailure> {
        let opts = graph_options(&model.engine, &p)?;
        graph_what_if(&model.engine, &text, delete, &opts, &job)
    });
    task.await.map_err(UiFailure::internal)?.map(Json)
}

// ---- a flow log on the graph ----

/// Largest number of outside addresses listed per observed edge (the counts are always exact).
pub const MAX_OBSERVED_ADDRESSES: usize = 10;
/// Largest number of unreadable lines and unresolved flows listed in a flow overlay (the counts are exact).
pub const MAX_OVERLAY_PROBLEMS: usize = 100;

/// One observed flow of an edge, to explain: the first one the model or the log denies, else the first one.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ObservedFlow {
    /// `namespace/pod` or an address outside the cluster.
    pub src: String,
    pub dst: String,
    /// As `GET /api/v1/explain` takes it: `PORT/PROTOCOL`, or `icmp:TYPE:CODE`.
    pub port: String,
    /// What the log says: `allowed`, `denied`, `mixed` (both) or `seen` (no verdict).
    pub observed: String,
    /// The loaded model's verdict: `allow` or `deny`.
    pub model: String,
    /// Where the log first shows it (file and line).
    pub file: String,
    pub line: u64,
}

/// What a flow log shows between two nodes of the graph (or a node and addresses outside the cluster), on every
/// port it logged (or the requested one).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ObservedEdge {
    /// The source node's id (as in `GET /api/v1/graph` with the same grouping); `null`: addresses outside the
    /// cluster (`addresses`).
    pub src: Option<String>,
    /// The destination node's id; `null`: addresses outside the cluster.
    pub dst: Option<String>,
    /// Connection classes (source, destination, protocol, port) folded from the log.
    pub flows: u64,
    /// Connections logged (each class's count of distinct connections).
    pub connections: u64,
    /// Connections of classes the log shows allowed.
    pub allowed: u64,
    /// Connections of classes the log shows denied.
    pub denied: u64,
    /// Connections of classes the log shows both allowed and denied.
    pub mixed: u64,
    /// Connections of classes logged without a verdict.
    pub seen: u64,
    /// Connections the loaded policies deny (the model's verdict of the side the log judged).
    #[serde(rename = "modelDenied")]
    pub model_denied: u64,
    /// Connections whose logged verdict the model contradicts (logged allowed and the model denies, or the other
    /// way round).
    pub disagreements: u64,
    /// Whether any of it is denied, by the log (`denied`, `mixed`) or by the model (`modelDenied`): drawn red.
    #[serde(rename = "deniedAny")]
    pub denied_any: bool,
    /// Whether the model agrees with every verdict the log gives (`disagreements == 0`).
    #[serde(rename = "modelAgrees")]
    pub model_agrees: bool,
    /// With a what-if (`whatif` in a JSON request): connections the loaded policies allow and the changed ones
    /// deny, observed traffic the change would cut (0 without a what-if).
    #[serde(rename = "newlyDenied")]
    pub newly_denied: u64,
    /// With a what-if: connections the loaded policies deny and the changed ones allow.
    #[serde(rename = "newlyAllowed")]
    pub newly_allowed: u64,
    /// The ports observed, `PORT/PROTOCOL` (ICMP: `icmp:TYPE:CODE`), sorted.
    pub ports: Vec<String>,
    /// The outside addresses of a `null` end (at most 10).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    pub example: ObservedFlow,
}

/// A line of the flow log that could not be read, or an observed flow whose ends are not in the cluster.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct OverlayProblem {
    pub file: String,
    pub line: u64,
    pub message: String,
}

/// Totals of a flow overlay: flows (connection classes) and connections.
#[derive(Clone, Debug, Default, Serialize, ToSchema)]
pub struct OverlayCounts {
    /// Lines read, and lines that carry no flow (a format's non-flow records).
    pub lines: u64,
    #[serde(rename = "skippedLines")]
    pub skipped_lines: u64,
    /// Lines that could not be read (`errors` lists the first 100).
    #[serde(rename = "errorLines")]
    pub error_lines: u64,
    /// Every class read.
    pub flows: u64,
    pub connections: u64,
    /// Classes on the graph's edges (`edges`).
    #[serde(rename = "onEdges")]
    pub on_edges: u64,
    /// Classes not judged: an end the cluster does not have, or cannot be told (`unresolved` lists the first
    /// 100).
    pub unresolved: u64,
    /// Classes on another port than the requested one.
    #[serde(rename = "otherPorts")]
    pub other_ports: u64,
    /// Classes whose ends are both outside the focus (`namespace`, `selector`).
    #[serde(rename = "outsideFocus")]
    pub outside_focus: u64,
}

/// A flow log over the graph: the edges it observed, mapped onto the graph's nodes.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct GraphFlowsResponse {
    /// The grouping the node ids are of (pass the graph's `grouping` as `group` to overlay it).
    pub grouping: Grouping,
    /// The port the overlay is limited to (`PORT/PROTOCOL`); absent: every port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    /// Whether a what-if was replayed too (each edge's `newlyDenied` and `newlyAllowed`).
    pub whatif: bool,
    /// Observed edges, denied ones first (by connections), then by connections.
    pub edges: Vec<ObservedEdge>,
    pub counts: OverlayCounts,
    /// The first lines that could not be read.
    pub errors: Vec<OverlayProblem>,
    /// The first observed flows that could not be judged, with the reason.
    pub unresolved: Vec<OverlayProblem>,
    /// The CNI whose reading the model's verdicts follow.
    pub cni: crate::CniInfo,
    /// Time the server spent, in milliseconds.
    #[serde(rename = "computeMs")]
    pub compute_ms: f64,
}

/// `POST /api/v1/graph/flows` with `Content-Type: application/json`: the flow log, and the what-if editor's text
/// to replay it against too.
#[derive(serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GraphFlowsRequest {
    /// The flow log, one record per line.
    pub flows: String,
    /// Policies as `POST /api/v1/graph/whatif` takes its body (YAML documents or JSON): the changed model each
    /// edge's `newlyDenied` and `newlyAllowed` are counted against.
    #[serde(default)]
    pub whatif: Option<String>,
    /// Loaded policies to delete in the what-if, as `delete` of `POST /api/v1/graph/whatif` (with or without
    /// `whatif`).
    #[serde(default)]
    pub delete: Vec<String>,
}

/// A port as `GET /api/v1/explain` takes it.
fn port_param(proto: Protocol, port: u16) -> String {
    if proto.has_ports() {
        format!("{port}/{proto}")
    } else {
        format!("{}:{}:{}", proto.to_string().to_ascii_lowercase(), port >> 8, port & 0xff)
    }
}

/// The observed edges of a replay's rows on the nodes of `grouping` (the rows' ends are `namespace/pod` or an
/// address, as [`netpol_input::replay::replay`] names them).
pub fn observed_edges(
    e: &Engine,
    rep: &netpol_input::replay::Report,
    grouping: Grouping,
    focus: &Focus,
    port: Option<(u16, Protocol)>,
    counts: &mut OverlayCounts,
) -> Vec<ObservedEdge> {
    use netpol_input::replay::Observation;
    let nodes = group(e, grouping, focus);
    let c = e.cluster();
    let pods: HashMap<String, PodId> = (0..c.pods.len()).map(PodId::new).map(|p| (c.pod_ref(p), p)).collect();
    let node_of = |end: &str| -> Option<u32> {
        let &p = pods.get(end)?;
        nodes.of_identity.get(e.pod_identity(p).index()).copied().filter(|&n| n != u32::MAX)
    };
    // By (source node, destination node); `None`: outside the cluster.
    type Ends = (Option<u32>, Option<u32>);
    let mut acc: BTreeMap<Ends, ObservedEdge> = BTreeMap::new();
    let mut ports: HashMap<Ends, BTreeSet<(Protocol, u16)>> = HashMap::new();
    for r in &rep.rows {
        if port.is_some_and(|(p, proto)| (p, proto) != (r.port, r.protocol)) {
            counts.other_ports += 1;
            continue;
        }
        let (a, b) = (node_of(&r.src), node_of(&r.dst));
        let focused = |n: Option<u32>| n.and_then(|n| nodes.list.get(n as usize)).is_some_and(|n| n.focus);
        if !focused(a) && !focused(b) {
            counts.outside_focus += 1;
            continue;
        }
        counts.on_edges += 1;
        let model_denies = r.current == netpol_core::verdict::Verdict::Deny;
        let flow = || ObservedFlow {
            src: r.src.clone(),
            dst: r.dst.clone(),
            port: port_param(r.protocol, r.port),
            observed: match r.observed {
                Observation::Allowed => "allowed",
                Observation::Denied => "denied",
                Observation::Mixed => "mixed",
                Observation::Seen => "seen",
            }
            .to_string(),
            model: r.current.as_str().to_string(),
            file: r.file.clone(),
            line: r.line,
        };
        let id = |n: Option<u32>| n.and_then(|n| nodes.list.get(n as usize)).map(|n| n.id.clone());
        let edge = acc.entry((a, b)).or_insert_with(|| ObservedEdge {
            src: id(a),
            dst: id(b),
            flows: 0,
            connections: 0,
            allowed: 0,
            denied: 0,
            mixed: 0,
            seen: 0,
            model_denied: 0,
            disagreements: 0,
            denied_any: false,
            model_agrees: true,
            newly_denied: 0,
            newly_allowed: 0,
            ports: Vec::new(),
            addresses: Vec::new(),
            example: flow(),
        });
        let n = r.connections;
        edge.flows += 1;
        edge.connections += n;
        match r.observed {
            Observation::Allowed => edge.allowed += n,
            Observation::Denied => edge.denied += n,
            Observation::Mixed => edge.mixed += n,
            Observation::Seen => edge.seen += n,
        }
        if model_denies {
            edge.model_denied += n;
        }
        if r.disagreement.is_some() {
            edge.disagreements += n;
            edge.model_agrees = false;
        }
        match r.change {
            Some(netpol_input::replay::Change::NewlyDenied) => edge.newly_denied += n,
            Some(netpol_input::replay::Change::NewlyAllowed) => edge.newly_allowed += n,
            None => {}
        }
        let red = model_denies || matches!(r.observed, Observation::Denied | Observation::Mixed);
        if red && !edge.denied_any {
            edge.example = flow();
        }
        edge.denied_any |= red;
        for (end, node) in [(&r.src, a), (&r.dst, b)] {
            if node.is_none() && edge.addresses.len() < MAX_OBSERVED_ADDRESSES && !edge.addresses.contains(end) {
                edge.addresses.push(end.clone());
            }
        }
        ports.entry((a, b)).or_default().insert((r.protocol, r.port));
    }
    let mut edges: Vec<ObservedEdge> = acc
        .into_iter()
        .map(|(k, mut edge)| {
            let mut ps: Vec<(Protocol, u16)> = ports.remove(&k).unwrap_or_default().into_iter().collect();
            ps.sort_by_key(|&(proto, port)| (port, proto));
            edge.ports = ps.into_iter().map(|(proto, port)| port_param(proto, port)).collect();
            edge
        })
        .collect();
    edges.sort_by(|x, y| {
        (!x.denied_any, std::cmp::Reverse(x.connections), &x.src, &x.dst).cmp(&(
            !y.denied_any,
            std::cmp::Reverse(y.connections),
            &y.src,
            &y.dst,
        ))
    });
    edges
}

/// A flow log over the graph: its observed connections judged by the loaded policies and mapped onto the graph's
/// nodes, edge by edge.
///
/// The body is the flow log (one record per line in any format `POST /api/v1/flows/replay` reads, gzip
/// accepted); or, with `Content-Type: application/json`, a `GraphFlowsRequest`: the log and a what-if (the
/// policies of the graph what-if's editor, and deletions), which each edge's `newlyDenied` (observed traffic the
/// change would cut) and `newlyAllowed` count against; an invalid pasted policy gets 422 with its field, document
/// and line, as the graph what-if.
///
/// Each edge between two nodes (or a node and addresses outside the cluster, `null`) counts its observed flows
/// and connections, by what the log says (allowed, denied, both, no verdict) and by the loaded model's verdict
/// (`modelDenied`, `disagreements`); `deniedAny` marks what the UI draws red. Give `group` (the graph's
/// `grouping`), `namespace` and `selector` as for the graph being overlaid, so that node ids match; `port` limits
/// the overlay to one port (default: every port observed).
#[utoipa::path(post, path = "/api/v1/graph/flows", tag = "ui",
    params(
        ("port" = Option<String>, Query, description = "only the flows on this port, `PORT` or `PORT/PROTOCOL` (default: every port)"),
        ("namespace" = Option<String>, Query, description = "focus on the pods of this namespace (as the graph)"),
        ("selector" = Option<String>, Query, description = "focus on pods matching this label selector (as the graph)"),
        ("group" = Option<String>, Query, description = "the grouping of the node ids: `labels`, `app`, `namespace`, or `auto` (default; the graph's `grouping` is the one to give)"),
        ("max_nodes" = Option<usize>, Query, description = "with `group=auto`: as the graph"),
        ("format" = Option<String>, Query, description = "read every line in this format: `hubble`, `calico`, `kube-network-policies`, `gadget` or `netpol` (default: detected line by line)"),
    ),
    request_body(description = "the flow log (JSON Lines or text; gzip accepted), or with `Content-Type: application/json` the log and a what-if",
        content((String = "application/x-ndjson"), (GraphFlowsRequest = "application/json"))),
    responses(
        (status = 200, description = "the observed edges", body = GraphFlowsResponse),
        (status = 400, description = "invalid parameter, a JSON body that is not a `GraphFlowsRequest`, invalid YAML in `whatif`", body = UiError),
        (status = 404, description = "unknown namespace, or a policy to delete does not exist", body = UiError),
        (status = 422, description = "a what-if policy is invalid (field, document, line)", body = UiError),
        (status = 413, description = "body (or the decompressed log) larger than the limit", body = UiError),
        (status = 415, description = "a `Content-Encoding` other than gzip", body = UiError),
    ))]
pub async fn graph_flows_handler(
    State(state): State<AppState>,
    Extension(model): Extension<Arc<Model>>,
    uri_query: axum::extract::RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<GraphFlowsResponse>, UiFailure> {
    let p = parse_params(uri_query.0.as_deref())?;
    let body = body.map_err(|r| {
        let status = r.status();
        let msg =
            if status == StatusCode::PAYLOAD_TOO_LARGE { "request body too large".to_string() } else { r.body_text() };
        UiFailure::new(status, "body", msg)
    })?;
    let forced = crate::flow_format_param(&p)?;
    crate::check_content_encoding(&headers)?;
    let json = crate::is_json_content(&headers);
    let max = state.body_limit.saturating_mul(crate::FLOW_LOG_EXPANSION);
    let (job, _cancel) = state
        .begin_expensive()
        .map_err(|b| UiFailure::new(StatusCode::SERVICE_UNAVAILABLE, "server", b.message(state.expensive_slots())))?;
    let task = tokio::task::spawn_blocking(move || -> Result<GraphFlowsResponse, UiFailure> {
        let t = Instant::now();
        let e = &model.engine;
        let opts = graph_options(e, &p)?;
        let port = match param(&p, "port") {
            Some(_) => Some((opts.port, opts.protocol)),
            None => None,
        };
        let grouping = opts.grouping.unwrap_or_else(|| auto_grouping(e, &opts.focus, opts.max_nodes));
        let req = match json {
            true => Some(crate::json_request::<GraphFlowsRequest>(
                &body,
                max,
                &job,
                "{\"flows\": \"<the flow log>\", \"whatif\": \"<policies>\", \"delete\": [...]}",
            )?),
            false => None,
        };
        let (text, whatif) = match &req {
            Some(r) => (r.flows.as_bytes(), Some((r.whatif.as_deref().unwrap_or(""), r.delete.clone()))),
            None => (&body[..], None),
        };
        let changed = match whatif {
            Some((text, delete)) if !text.trim().is_empty() || !delete.is_empty() => {
                let (new, _) = what_if_engine(e.cluster(), text, delete)?;
                job.check()?;
                Some(new)
            }
            _ => None,
        };
        let log = crate::read_flow_log(text, if req.is_some() { "flows" } else { "body" }, forced, max, &job)?;
        // The verdicts only: an explanation per disagreeing row would cost much and show nowhere.
        let quiet = netpol_input::replay::Options { no_explanations: true, ..Default::default() };
        let rep = netpol_input::replay::replay(e, changed.as_ref(), &log.folded, quiet);
        job.check()?;
        let mut counts = OverlayCounts {
            lines: log.lines,
            skipped_lines: log.skipped,
            error_lines: log.errors.len() as u64,
            flows: rep.summary.observed.classes,
            connections: rep.summary.observed.connections,
            unresolved: rep.summary.unresolved.classes,
            ..OverlayCounts::default()
        };
        let edges = observed_edges(e, &rep, grouping, &opts.focus, port, &mut counts);
        job.check()?;
        let problem = |file: &str, line: u64, message: &str| OverlayProblem {
            file: file.to_string(),
            line,
            message: message.to_string(),
        };
        Ok(GraphFlowsResponse {
            grouping,
            port: port.map(|(p, proto)| port_param(proto, p)),
            whatif: changed.is_some(),
            edges,
            counts,
            errors: log
                .errors
                .iter()
                .take(MAX_OVERLAY_PROBLEMS)
                .map(|x| problem(&x.file, x.line, &x.message))
                .collect(),
            unresolved: rep
                .unresolved
                .iter()
                .take(MAX_OVERLAY_PROBLEMS)
                .map(|u| problem(&u.file, u.line, &u.reason))
                .collect(),
            cni: crate::CniInfo::of(e),
            compute_ms: t.elapsed().as_secs_f64() * 1000.0,
        })
    });
    task.await.map_err(UiFailure::internal)?.map(Json)
}

// ---- a loaded policy as YAML ----

#[derive(Serialize)]
struct NpDoc {
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    kind: &'static str,
    metadata: NpMeta,
    spec: NpSpec,
}

#[derive(Serialize)]
struct NpMeta {
    name: String,
    namespace: String,
}

#[derive(Serialize)]
struct NpSpec {
    #[serde(rename = "podSelector")]
    pod_selector: SelectorDoc,
    #[serde(rename = "policyTypes")]
    policy_types: Vec<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ingress: Vec<RuleDoc>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    egress: Vec<RuleDoc>,
}

#[derive(Serialize)]
struct RuleDoc {
    #[serde(skip_serializing_if = "Option::is_none")]
    from: Option<Vec<PeerDoc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<Vec<PeerDoc>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ports: Vec<PortDoc>,
}

#[derive(Serialize, Default)]
struct PeerDoc {
    #[serde(rename = "namespaceSelector", skip_serializing_if = "Option::is_none")]
    namespace_selector: Option<SelectorDoc>,
    #[serde(rename = "podSelector", skip_serializing_if = "Option::is_none")]
    pod_selector: Option<SelectorDoc>,
    #[serde(rename = "ipBlock", skip_serializing_if = "Option::is_none")]
    ip_block: Option<IpBlockDoc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    networks: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nodes: Option<SelectorDoc>,
    #[serde(rename = "domainNames", skip_serializing_if = "Option::is_none")]
    domain_names: Option<Vec<String>>,
    /// Cilium's `toFQDNs` selectors, as text (`matchName x`, `matchPattern *.y`).
    #[serde(rename = "toFQDNs", skip_serializing_if = "Option::is_none")]
    to_fqdns: Option<Vec<String>>,
    /// A Calico entity rule's criteria, as text.
    #[serde(skip_serializing_if = "Option::is_none")]
    calico: Option<String>,
}

#[derive(Serialize)]
struct IpBlockDoc {
    cidr: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    except: Vec<String>,
}

#[derive(Serialize)]
struct PortDoc {
    protocol: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<serde_json::Value>,
    #[serde(rename = "endPort", skip_serializing_if = "Option::is_none")]
    end_port: Option<u16>,
}

#[derive(Serialize, Default)]
struct SelectorDoc {
    #[serde(rename = "matchLabels", skip_serializing_if = "BTreeMap::is_empty")]
    match_labels: BTreeMap<String, String>,
    #[serde(rename = "matchExpressions", skip_serializing_if = "Vec::is_empty")]
    match_expressions: Vec<ExprDoc>,
}

#[derive(Serialize)]
struct ExprDoc {
    key: String,
    operator: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    values: Vec<String>,
}

fn selector_doc(s: &Selector) -> SelectorDoc {
    let mut d = SelectorDoc::default();
    for r in s.requirements() {
        let expr = |op, values: &[Atom]| ExprDoc {
            key: r.key().to_string(),
            operator: op,
            values: values.iter().map(|v| v.to_string()).collect(),
        };
        match r {
            Requirement::In(k, vs) if vs.len() == 1 && !d.match_labels.contains_key(&**k) => {
                d.match_labels.insert(k.to_string(), vs.concat());
            }
            Requirement::In(_, vs) => d.match_expressions.push(expr("In", vs)),
            Requirement::NotIn(_, vs) => d.match_expressions.push(expr("NotIn", vs)),
            Requirement::Exists(_) => d.match_expressions.push(expr("Exists", &[])),
            Requirement::DoesNotExist(_) => d.match_expressions.push(expr("DoesNotExist", &[])),
        }
    }
    d
}

fn rule_doc(r: &Rule, ingress: bool) -> RuleDoc {
    let peers: Vec<PeerDoc> = r
        .peers
        .iter()
        .map(|p| match p {
            Peer::Selectors { namespaces, pods } => PeerDoc {
                namespace_selector: namespaces.as_ref().map(selector_doc),
                pod_selector: pods.as_ref().map(selector_doc),
                ..PeerDoc::default()
            },
            Peer::Networks(n) => {
                PeerDoc { networks: Some(n.iter().map(|n| n.to_string()).collect()), ..PeerDoc::default() }
            }
            Peer::Nodes(s) => PeerDoc { nodes: Some(selector_doc(s)), ..PeerDoc::default() },
            Peer::DomainNames(d) => PeerDoc { domain_names: Some(d.clone()), ..PeerDoc::default() },
            Peer::Fqdns(d) => {
                PeerDoc { to_fqdns: Some(d.iter().map(|x| x.to_string()).collect()), ..PeerDoc::default() }
            }
            Peer::Calico(c) => PeerDoc { calico: Some(c.to_string()), ..PeerDoc::default() },
            Peer::SubjectNodes { own, others } => {
                PeerDoc { calico: Some(Peer::subject_nodes_text(*own, *others)), ..PeerDoc::default() }
            }
            Peer::NodeSelector(sel) => {
                PeerDoc { calico: Some(format!("nodes {sel} (not the subject's own)")), ..PeerDoc::default() }
            }
            Peer::IpBlock(b) => PeerDoc {
                ip_block: Some(IpBlockDoc {
                    cidr: b.cidr.to_string(),
                    except: b.except.iter().map(|x| x.to_string()).collect(),
                }),
                ..PeerDoc::default()
            },
        })
        .collect();
    let peers = if peers.is_empty() { None } else { Some(peers) };
    let ports = r
        .ports
        .iter()
        .map(|p| {
            let (port, end_port) = match &p.port {
                PortMatch::Any => (None, None),
                PortMatch::Range(lo, hi) if lo == hi => (Some(serde_json::json!(lo)), None),
                PortMatch::Range(lo, hi) => (Some(serde_json::json!(lo)), Some(*hi)),
                PortMatch::Named(n) => (Some(serde_json::json!(n)), None),
            };
            PortDoc { protocol: p.protocol.as_str(), port, end_port }
        })
        .collect();
    if ingress {
        RuleDoc { from: peers, to: None, ports }
    } else {
        RuleDoc { from: None, to: peers, ports }
    }
}

// The admin kinds' shapes: ClusterNetworkPolicy (v1alpha2: `tier`, `protocols`, `Accept`) and AdminNetworkPolicy /
// BaselineAdminNetworkPolicy (v1alpha1: `ports`, `Allow`), with the field names `load::admin` reads.

#[derive(Serialize)]
struct AdminDoc {
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    kind: &'static str,
    metadata: AdminMeta,
    spec: AdminSpec,
}

#[derive(Serialize)]
struct AdminMeta {
    name: String,
}

#[derive(Serialize)]
struct AdminSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    tier: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    priority: Option<netpol_core::model::Order>,
    subject: AdminPeerDoc,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ingress: Vec<AdminRuleDoc>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    egress: Vec<AdminRuleDoc>,
}

/// A subject or a peer: exactly one field.
#[derive(Serialize, Default)]
struct AdminPeerDoc {
    #[serde(skip_serializing_if = "Option::is_none")]
    namespaces: Option<SelectorDoc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pods: Option<NamespacedPodDoc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nodes: Option<SelectorDoc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    networks: Option<Vec<String>>,
    #[serde(rename = "domainNames", skip_serializing_if = "Option::is_none")]
    domain_names: Option<Vec<String>>,
    /// Cilium's `toFQDNs` selectors, as text (`matchName x`, `matchPattern *.y`).
    #[serde(rename = "toFQDNs", skip_serializing_if = "Option::is_none")]
    to_fqdns: Option<Vec<String>>,
    /// A Calico entity rule's criteria, as text.
    #[serde(skip_serializing_if = "Option::is_none")]
    calico: Option<String>,
}

#[derive(Serialize)]
struct NamespacedPodDoc {
    #[serde(rename = "namespaceSelector")]
    namespace_selector: SelectorDoc,
    #[serde(rename = "podSelector")]
    pod_selector: SelectorDoc,
}

#[derive(Serialize)]
struct AdminRuleDoc {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    action: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    from: Option<Vec<AdminPeerDoc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<Vec<AdminPeerDoc>>,
    /// ClusterNetworkPolicy.
    #[serde(skip_serializing_if = "Option::is_none")]
    protocols: Option<Vec<serde_yaml_ng::Value>>,
    /// AdminNetworkPolicy, BaselineAdminNetworkPolicy.
    #[serde(skip_serializing_if = "Option::is_none")]
    ports: Option<Vec<serde_yaml_ng::Value>>,
}

fn admin_peer_doc(p: &Peer) -> AdminPeerDoc {
    match p {
        Peer::Selectors { namespaces, pods: None } => AdminPeerDoc {
            namespaces: Some(namespaces.as_ref().map(selector_doc).unwrap_or_default()),
            ..AdminPeerDoc::default()
        },
        Peer::Selectors { namespaces, pods: Some(pods) } => AdminPeerDoc {
            pods: Some(NamespacedPodDoc {
                namespace_selector: namespaces.as_ref().map(selector_doc).unwrap_or_default(),
                pod_selector: selector_doc(pods),
            }),
            ..AdminPeerDoc::default()
        },
        Peer::Networks(n) => {
            AdminPeerDoc { networks: Some(n.iter().map(|n| n.to_string()).collect()), ..AdminPeerDoc::default() }
        }
        Peer::Nodes(s) => AdminPeerDoc { nodes: Some(selector_doc(s)), ..AdminPeerDoc::default() },
        Peer::DomainNames(d) => AdminPeerDoc { domain_names: Some(d.clone()), ..AdminPeerDoc::default() },
        Peer::Fqdns(d) => {
            AdminPeerDoc { to_fqdns: Some(d.iter().map(|x| x.to_string()).collect()), ..AdminPeerDoc::default() }
        }
        Peer::Calico(c) => AdminPeerDoc { calico: Some(c.to_string()), ..AdminPeerDoc::default() },
        Peer::SubjectNodes { own, others } => {
            AdminPeerDoc { calico: Some(Peer::subject_nodes_text(*own, *others)), ..AdminPeerDoc::default() }
        }
        Peer::NodeSelector(sel) => {
            AdminPeerDoc { calico: Some(format!("nodes {sel} (not the subject's own)")), ..AdminPeerDoc::default() }
        }
        // The admin kinds have no ipBlock: its CIDR is the nearest (the loader never makes one).
        Peer::IpBlock(b) => AdminPeerDoc { networks: Some(vec![b.cidr.to_string()]), ..AdminPeerDoc::default() },
    }
}

/// A YAML mapping with its keys in this order.
fn ymap<const N: usize>(entries: [(&str, serde_yaml_ng::Value); N]) -> serde_yaml_ng::Value {
    serde_yaml_ng::Value::Mapping(entries.into_iter().map(|(k, v)| (serde_yaml_ng::Value::from(k), v)).collect())
}

/// The `protocols` (ClusterNetworkPolicy) or `ports` (v1alpha1) entries of a rule. A named port has no protocol in
/// these kinds: the loader makes one model entry per protocol (TCP, UDP, SCTP), written back as one entry.
fn admin_ports(kind: PolicyKind, ports: &[netpol_core::model::PolicyPort]) -> Vec<serde_yaml_ng::Value> {
    use serde_yaml_ng::Value;
    let num = |n: u16| Value::Number(n.into());
    let cnp = kind == PolicyKind::ClusterNetworkPolicy;
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(p) = ports.get(i) {
        i += 1;
        let (lo, hi) = match &p.port {
            PortMatch::Named(name) => {
                let same = |k: usize, proto: Protocol| {
                    ports.get(k).is_some_and(|q| q.protocol == proto && q.port == PortMatch::Named(name.clone()))
                };
                if p.protocol == Protocol::Tcp && same(i, Protocol::Udp) && same(i + 1, Protocol::Sctp) {
                    i += 2;
                }
                let field = if cnp { "destinationNamedPort" } else { "namedPort" };
                out.push(ymap([(field, Value::from(name.as_str()))]));
                continue;
            }
            PortMatch::Range(lo, hi) => (*lo, *hi),
            // Not made by the loader for these kinds: every port of the protocol.
            PortMatch::Any => (1, 65535),
        };
        let proto = p.protocol.as_str();
        out.push(match (cnp, lo == hi) {
            (true, single) => {
                let port = match single {
                    true => ymap([("number", num(lo))]),
                    false => ymap([("range", ymap([("start", num(lo)), ("end", num(hi))]))]),
                };
                ymap([(proto.to_ascii_lowercase().as_str(), ymap([("destinationPort", port)]))])
            }
            (false, true) => ymap([("portNumber", ymap([("protocol", Value::from(proto)), ("port", num(lo))]))]),
            (false, false) => {
                ymap([("portRange", ymap([("protocol", Value::from(proto)), ("start", num(lo)), ("end", num(hi))]))])
            }
        });
    }
    out
}

fn admin_rule_doc(kind: PolicyKind, r: &Rule, ingress: bool) -> AdminRuleDoc {
    let peers: Option<Vec<AdminPeerDoc>> = Some(r.peers.iter().map(admin_peer_doc).collect());
    let ports = (!r.ports.is_empty()).then(|| admin_ports(kind, &r.ports));
    let cnp = kind == PolicyKind::ClusterNetworkPolicy;
    let (from, to) = if ingress { (peers, None) } else { (None, peers) };
    let (protocols, ports) = if cnp { (ports, None) } else { (None, ports) };
    AdminRuleDoc { name: r.name.clone(), action: crate::api_action(kind, r.action), from, to, protocols, ports }
}

/// A cluster-scoped policy in its own API's shape.
fn admin_policy_yaml(pol: &Policy, namespaces: &Selector) -> Result<String, String> {
    let subject = if pol.pod_selector.is_everything() {
        AdminPeerDoc { namespaces: Some(selector_doc(namespaces)), ..AdminPeerDoc::default() }
    } else {
        AdminPeerDoc {
            pods: Some(NamespacedPodDoc {
                namespace_selector: selector_doc(namespaces),
                pod_selector: selector_doc(&pol.pod_selector),
            }),
            ..AdminPeerDoc::default()
        }
    };
    let api_version = match pol.kind {
        PolicyKind::ClusterNetworkPolicy => "policy.networking.k8s.io/v1alpha2",
        _ => "policy.networking.k8s.io/v1alpha1",
    };
    let doc = AdminDoc {
        api_version,
        kind: pol.kind.as_str(),
        metadata: AdminMeta { name: pol.name.clone() },
        spec: AdminSpec {
            tier: (pol.kind == PolicyKind::ClusterNetworkPolicy).then(|| pol.tier.as_str()),
            priority: crate::priority_of(pol),
            subject,
            ingress: pol.ingress.iter().map(|r| admin_rule_doc(pol.kind, r, true)).collect(),
            egress: pol.egress.iter().map(|r| admin_rule_doc(pol.kind, r, false)).collect(),
        },
    };
    serde_yaml_ng::to_string(&doc).map_err(|e| e.to_string())
}

/// A loaded policy as a manifest of its own kind: what netpol understood (effective policyTypes, `matchLabels`
/// for single-value requirements), not the original text. A NetworkPolicy is a `networking.k8s.io/v1`
/// NetworkPolicy; a ClusterNetworkPolicy is `policy.networking.k8s.io/v1alpha2` (tier, priority, `protocols`,
/// `Accept`), an AdminNetworkPolicy or BaselineAdminNetworkPolicy `policy.networking.k8s.io/v1alpha1` (`ports`,
/// `Allow`); a Calico NetworkPolicy or GlobalNetworkPolicy is `projectcalico.org/v3` (`tier`, `order`, `selector`,
/// `types`, rules with `source` and `destination`: see [`crate::calico`]). Loading the text gives the same policy
/// back.
pub fn policy_yaml(c: &Cluster, pol: &Policy) -> Result<String, String> {
    if crate::is_calico_kind(pol.kind) {
        return crate::calico::policy_yaml(c, pol);
    }
    if let Scope::Cluster(namespaces) = &pol.scope {
        return admin_policy_yaml(pol, namespaces);
    }
    let mut types = Vec::new();
    if pol.affects_ingress {
        types.push("Ingress");
    }
    if pol.affects_egress {
        types.push("Egress");
    }
    let doc = NpDoc {
        api_version: "networking.k8s.io/v1",
        kind: "NetworkPolicy",
        metadata: NpMeta {
            name: pol.name.clone(),
            namespace: pol.ns().map(|ns| c.ns_name(ns).to_string()).unwrap_or_default(),
        },
        spec: NpSpec {
            pod_selector: selector_doc(&pol.pod_selector),
            policy_types: types,
            ingress: pol.ingress.iter().map(|r| rule_doc(r, true)).collect(),
            egress: pol.egress.iter().map(|r| rule_doc(r, false)).collect(),
        },
    };
    serde_yaml_ng::to_string(&doc).map_err(|e| e.to_string())
}

/// A loaded policy (or tier) as YAML, in its own API's shape, as netpol understood it: the starting point of a
/// what-if edit.
///
/// `policy`: a NetworkPolicy (`networking.k8s.io/v1`, effective `policyTypes`), a ClusterNetworkPolicy
/// (`v1alpha2`), an AdminNetworkPolicy or BaselineAdminNetworkPolicy (`v1alpha1`), a Calico NetworkPolicy or
/// GlobalNetworkPolicy (`projectcalico.org/v3`: `tier`, `order`, `selector`, `types`, rules with `action`,
/// `protocol`, `source`, `destination`). `tier`: a tier as a Calico `Tier` (`order`, `defaultAction`; the built-in
/// tiers by their Calico names). Loaded back, each is the same object. A CiliumNetworkPolicy
/// (`ciliumnetworkpolicy/namespace/name`) or CiliumClusterwideNetworkPolicy (`ccnp/name`)
/// is the object as its author wrote it (kept at load time: Cilium lowers one object to several policies of the
/// model, which cannot give it back), whichever of its policies is named.
#[utoipa::path(get, path = "/api/v1/manifest", tag = "ui",
    params(
        ("policy" = Option<String>, Query, description = "a loaded policy: `namespace/name` of a NetworkPolicy, `cnp/name`, `anp/name`, `banp/name` of a cluster-scoped admin policy, `gnp/name` of a Calico GlobalNetworkPolicy, `caliconetworkpolicy/namespace/name` of a Calico NetworkPolicy"),
        ("tier" = Option<String>, Query, description = "instead of `policy`: a tier, by the name the answers give it (`GET /api/v1/tiers`)"),
    ),
    responses(
        (status = 200, description = "the manifest", body = String, content_type = "application/yaml"),
        (status = 400, description = "missing or malformed `policy` (or `tier`)", body = UiError),
        (status = 404, description = "no such policy or tier", body = UiError),
    ))]
pub async fn manifest_handler(
    Extension(model): Extension<Arc<Model>>,
    uri_query: axum::extract::RawQuery,
) -> Result<Response, UiFailure> {
    let p = parse_params(uri_query.0.as_deref())?;
    let c = &model.engine.cluster();
    let yaml = |text: String| ([(header::CONTENT_TYPE, "application/yaml; charset=utf-8")], text).into_response();
    if let Some(t) = param(&p, "tier") {
        let (i, def) = c
            .tiers
            .iter()
            .enumerate()
            .find(|(_, d)| d.name == t)
            .ok_or_else(|| UiFailure::new(StatusCode::NOT_FOUND, "tier", format!("no tier `{t}`")))?;
        return Ok(yaml(crate::calico::tier_yaml(c, i, def).map_err(UiFailure::internal)?));
    }
    let r =
        param(&p, "policy").ok_or_else(|| UiFailure::bad("policy", "missing query parameter `policy` (or `tier`)"))?;
    if !r.contains('/') {
        return Err(UiFailure::bad(
            "policy",
            format!(
                "expected `namespace/name` (or `cnp/name`, `anp/name`, `banp/name`, `gnp/name`, \
                 `caliconetworkpolicy/namespace/name`), got `{r}`"
            ),
        ));
    }
    let pol = c
        .find_policy(r)
        .map(|p| c.policy(p))
        .ok_or_else(|| UiFailure::new(StatusCode::NOT_FOUND, "policy", format!("no policy `{r}`")))?;
    // A Cilium object is several policies of the model: each kept the object as written (`Policy::manifest`).
    if let Some(text) = &pol.manifest {
        return Ok(yaml(text.to_string()));
    }
    Ok(yaml(policy_yaml(c, pol).map_err(UiFailure::internal)?))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn selectors_in_kubectl_syntax() {
        let s = parse_selector("app=web, tier in (a,b),!legacy,env!=prod,team,x==y,z notin (q)").unwrap();
        assert_eq!(s.to_string(), "app=web,tier in (a,b),x=y,env notin (prod),z notin (q),team,!legacy");
        for bad in ["", "a=b,", "=x", "a in (b", "a in b)", "a foo (b)", "a=b=c", "-a=b", "a=in valid"] {
            assert!(parse_selector(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn apply_field_split() {
        assert_eq!(split_apply_field("apply[3].spec.x"), Some((3, Some("spec.x"))));
        assert_eq!(split_apply_field("apply[0]"), Some((0, None)));
        assert_eq!(split_apply_field("delete[0]"), None);
    }
}
