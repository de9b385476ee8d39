//! Loading: bytes of YAML/JSON manifests → validated [`Cluster`] plus [`Diagnostic`]s.
//!
//! Owns document splitting (multi-document YAML, JSON streams, `kind: List`), decoding into k8s-openapi types
//! (with the field path of any type error), and the API server's validation rules for NetworkPolicies, pods and
//! label selectors. An invalid object is reported and left out; every valid object is still loaded. The caller
//! (the CLI) does the file I/O and hands bytes in with a name.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::networking::v1 as net;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::*;
use crate::portset::Protocol;
use crate::selector::{self, Labels, Requirement, Selector};

/// Kinds netpol reads; everything else is skipped (and counted).
const MODELLED_KINDS: [&str; 9] =
    ["Namespace", "Pod", "NetworkPolicy", "Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job", "CronJob"];

/// The label the API server puts on every namespace.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

/// A problem found while loading, pointing at file, document, object and field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub origin: Origin,
    /// `Kind namespace/name` when known.
    pub object: Option<String>,
    /// JSON-path-like field path (`spec.ingress[0].ports[1].endPort`) when known.
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        write!(f, "{sev}: {}", self.origin)?;
        if let Some(o) = &self.object {
            write!(f, ": {o}")?;
        }
        if let Some(fp) = &self.field {
            write!(f, ": {fp}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Field-level validation errors of one object.
#[derive(Default)]
struct Errors(Vec<(String, String)>);

impl Errors {
    fn add(&mut self, path: impl Into<String>, msg: impl Into<String>) {
        self.0.push((path.into(), msg.into()));
    }
}

/// Accumulates objects from any number of inputs; [`Loader::finish`] yields the cluster.
#[derive(Default)]
pub struct Loader {
    namespaces: Vec<Namespace>,
    ns_index: HashMap<String, NsId>,
    pods: Vec<Pod>,
    policies: Vec<Policy>,
    seen: HashMap<(String, String, String), Origin>,
    /// Pod IPs seen so far, to report addresses used by two pods.
    ip_owner: HashMap<IpAddr, PodId>,
    diagnostics: Vec<Diagnostic>,
    skipped_kinds: BTreeMap<String, usize>,
}

/// Result of loading.
pub struct Loaded {
    pub cluster: Cluster,
    pub diagnostics: Vec<Diagnostic>,
    /// Objects of kinds netpol does not model, by kind (skipped, logged at debug level).
    pub skipped_kinds: BTreeMap<String, usize>,
}

/// YAML inputs at least this large are parsed on several threads (libyaml is most of the load time).
const PARALLEL_YAML_BYTES: usize = 1 << 20;

fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).min(8)
}

/// One YAML document as JSON-compatible data, with merge keys applied when `merge`.
fn parse_yaml_document(de: serde_yaml_ng::Deserializer<'_>, merge: bool) -> Result<Value, serde_yaml_ng::Error> {
    if merge {
        serde_yaml_ng::Value::deserialize(de).and_then(|mut y| {
            y.apply_merge()?;
            serde_yaml_ng::from_value::<Value>(y)
        })
    } else {
        Value::deserialize(de)
    }
}

/// The text split before each document start marker: a line that begins with `---` followed by a space, a tab or
/// the line end. YAML forbids such a line inside any content (plain, quoted or block scalars alike), so parsing
/// the pieces one by one yields the same documents as parsing the whole stream. `None` when the text has
/// directives (`%...`) or document end markers (`...`), whose effect across pieces this does not model.
pub(crate) fn split_yaml_documents(text: &str) -> Option<Vec<&str>> {
    let is_marker = |line: &str, m: &str| {
        line.starts_with(m) && line[m.len()..].chars().next().is_none_or(|c| matches!(c, ' ' | '\t' | '\r' | '\n'))
    };
    let mut pieces = Vec::new();
    let (mut start, mut pos) = (0, 0);
    for line in text.split_inclusive('\n') {
        if line.starts_with('%') || is_marker(line, "...") {
            return None;
        }
        if is_marker(line, "---") && pos > start {
            pieces.push(&text[start..pos]);
            start = pos;
        }
        pos += line.len();
    }
    if pos > start {
        pieces.push(&text[start..pos]);
    }
    Some(pieces)
}

/// Calls `f` with every document of `text` in order, while `threads` threads parse the documents that follow.
/// `Err(n)` after `n` documents when a document has a syntax error or the text cannot be split: the caller then
/// parses sequentially from document `n` on, which reports the error where it is.
fn for_each_yaml_document_parallel(
    text: &str,
    merge: bool,
    threads: usize,
    mut f: impl FnMut(Value),
) -> Result<(), usize> {
    let mut pieces = split_yaml_documents(text).ok_or(0usize)?;
    // A stream without documents parses as one null document, but comments before the first marker of a longer
    // stream are no document: leave such a prefix out (a single piece parses exactly as the whole stream).
    let blank =
        |p: &str| p.lines().all(|l| matches!(l.trim_start_matches('\u{feff}').trim().chars().next(), None | Some('#')));
    if pieces.len() > 1 && pieces.first().is_some_and(|p| blank(p)) {
        pieces.remove(0);
    }
    if pieces.len() <= 1 {
        return Err(0);
    }
    // Small chunks handed out in turn, so the caller's work on early documents overlaps the parsing of later ones.
    let chunks: Vec<&[&str]> = pieces.chunks(pieces.len().div_ceil(threads.max(1) * 16).max(1)).collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut delivered = 0;
    let mut failed = false;
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::channel::<(usize, Option<Vec<Value>>)>();
        for _ in 0..threads.max(1) {
            let (tx, chunks, next) = (tx.clone(), &chunks, &next);
            scope.spawn(move || loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(chunk) = chunks.get(i) else { break };
                let parsed: Option<Vec<Value>> = chunk
                    .iter()
                    .flat_map(|piece| {
                        serde_yaml_ng::Deserializer::from_str(piece).map(|de| parse_yaml_document(de, merge).ok())
                    })
                    .collect();
                let stop = parsed.is_none();
                if tx.send((i, parsed)).is_err() || stop {
                    break;
                }
            });
        }
        drop(tx);
        let mut pending: BTreeMap<usize, Option<Vec<Value>>> = BTreeMap::new();
        let mut want = 0;
        for (i, parsed) in rx {
            pending.insert(i, parsed);
            while let Some(parsed) = pending.remove(&want) {
                let Some(docs) = parsed else {
                    failed = true;
                    // Let the workers finish quickly: nothing more is taken.
                    next.store(usize::MAX / 2, std::sync::atomic::Ordering::Relaxed);
                    return;
                };
                for v in docs {
                    f(v);
                    delivered += 1;
                }
                want += 1;
            }
        }
    });
    if failed || delivered == 0 {
        return Err(delivered);
    }
    Ok(())
}

/// The documents the parallel path delivers, and whether it finished (tests).
#[cfg(test)]
pub(crate) fn parse_yaml_parallel_for_tests(text: &str, threads: usize) -> (Vec<Value>, bool) {
    let mut docs = Vec::new();
    let done = for_each_yaml_document_parallel(text, text.contains("<<"), threads, |v| docs.push(v)).is_ok();
    (docs, done)
}

impl Loader {
    pub fn new() -> Self {
        Self::default()
    }

    /// Loads every document of one input. `name` is used in diagnostics.
    pub fn add_bytes(&mut self, name: &str, bytes: &[u8]) {
        let origin = |document| Origin { file: name.to_string(), document, item: None };
        let text = match std::str::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => {
                self.diag(Severity::Error, origin(0), None, None, format!("input is not UTF-8: {e}"));
                return;
            }
        };
        let trimmed = text.trim_start_matches('\u{feff}').trim_start();
        if trimmed.starts_with('{') || trimmed.starts_with('[') {
            // JSON (one value or a stream of values). A YAML flow mapping also starts with `{`: when the first
            // value is not valid JSON, read the input as YAML instead.
            let mut stream = serde_json::Deserializer::from_str(trimmed).into_iter::<Value>();
            let mut doc = 0;
            loop {
                match stream.next() {
                    None => return,
                    Some(Ok(v)) => self.add_value(v, origin(doc)),
                    Some(Err(_)) if doc == 0 => break,
                    Some(Err(e)) => {
                        self.diag(Severity::Error, origin(doc), None, None, format!("invalid JSON: {e}"));
                        return;
                    }
                }
                doc += 1;
            }
        }
        // YAML merge keys (`<<: *anchor`) need the slower path through serde_yaml_ng's own Value.
        let merge = text.contains("<<");
        let mut done = 0;
        if text.len() >= PARALLEL_YAML_BYTES {
            let r = for_each_yaml_document_parallel(text, merge, threads(), |v| {
                self.add_value(v, origin(done));
                done += 1;
            });
            if r.is_ok() {
                return;
            }
            // A syntax error, or a form the split does not model: the sequential parse below goes on from the
            // first document not loaded yet (both parses see the same documents) and reports the error there.
        }
        for (doc, de) in serde_yaml_ng::Deserializer::from_str(text).enumerate().skip(done) {
            match parse_yaml_document(de, merge) {
                Ok(v) => self.add_value(v, origin(doc)),
                Err(e) => {
                    self.diag(Severity::Error, origin(doc), None, None, format!("invalid YAML: {e}"));
                    // The YAML parser cannot resynchronise after a syntax error.
                    break;
                }
            }
        }
    }

    fn diag(
        &mut self,
        severity: Severity,
        origin: Origin,
        object: Option<String>,
        field: Option<String>,
        message: String,
    ) {
        self.diagnostics.push(Diagnostic { severity, origin, object, field, message });
    }

    /// Adds one decoded document (or List item).
    pub fn add_value(&mut self, mut v: Value, origin: Origin) {
        let Value::Object(map) = &mut v else {
            if !v.is_null() {
                self.diag(Severity::Error, origin, None, None, "document is not an object".into());
            }
            return;
        };
        let kind = map.get("kind").and_then(Value::as_str).unwrap_or("").to_string();
        let api_version = map.get("apiVersion").and_then(Value::as_str).unwrap_or("").to_string();
        if kind.is_empty() {
            self.diag(Severity::Error, origin, None, Some("kind".into()), "missing `kind`".into());
            return;
        }
        let label = object_label(&kind, map.get("metadata"));
        let typed_list = kind.strip_suffix("List").is_some_and(|k| MODELLED_KINDS.contains(&k));
        if kind == "List" || typed_list && map.get("items").is_some_and(Value::is_array) {
            if origin.item.is_some() {
                self.diag(Severity::Error, origin, Some(label), None, "nested lists are not supported".into());
                return;
            }
            let Some(Value::Array(items)) = map.remove("items") else {
                self.diag(Severity::Error, origin, Some(label), Some("items".into()), "a List needs `items`".into());
                return;
            };
            // Typed lists (`PodList` from the API) may omit kind/apiVersion on their items.
            let item_kind = kind.strip_suffix("List").filter(|k| !k.is_empty()).map(str::to_string);
            for (i, mut item) in items.into_iter().enumerate() {
                if let (Some(k), Value::Object(m)) = (&item_kind, &mut item) {
                    m.entry("kind").or_insert_with(|| Value::String(k.clone()));
                    m.entry("apiVersion").or_insert_with(|| Value::String(api_version.clone()));
                }
                self.add_value(item, Origin { item: Some(i), ..origin.clone() });
            }
            return;
        }
        let expected_api = match kind.as_str() {
            "Namespace" | "Pod" => "v1",
            "NetworkPolicy" => "networking.k8s.io/v1",
            "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" => "apps/v1",
            "Job" | "CronJob" => "batch/v1",
            _ => {
                tracing::debug!(%kind, %origin, "skipping object of a kind netpol does not model");
                *self.skipped_kinds.entry(kind).or_default() += 1;
                return;
            }
        };
        if api_version != expected_api {
            self.diag(
                Severity::Error,
                origin,
                Some(label),
                Some("apiVersion".into()),
                format!("unsupported apiVersion `{api_version}` for {kind}; expected `{expected_api}`"),
            );
            return;
        }
        // k8s-openapi fills in a default for a missing `spec`/`spec.template` of some workload kinds; the API
        // server requires the template, so check the raw document.
        let template_path = match kind.as_str() {
            "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" | "Job" => {
                Some(("/spec/template", "spec.template"))
            }
            "CronJob" => Some(("/spec/jobTemplate/spec/template", "spec.jobTemplate.spec.template")),
            _ => None,
        };
        if let Some((pointer, path)) = template_path {
            if v.pointer(pointer).is_none_or(Value::is_null) {
                let msg = format!("{kind} has no pod template");
                self.diag(Severity::Error, origin, Some(label), Some(path.into()), msg);
                return;
            }
        }
        match kind.as_str() {
            "Namespace" => {
                if let Some(o) = self.decode::<core::Namespace>(v, &origin, &label) {
                    self.add_namespace(o, origin, label)
                }
            }
            "Pod" => {
                if let Some(o) = self.decode::<core::Pod>(v, &origin, &label) {
                    self.add_pod(o.metadata, o.spec, o.status, "Pod", origin, label)
                }
            }
            "NetworkPolicy" => {
                if let Some(o) = self.decode::<net::NetworkPolicy>(v, &origin, &label) {
                    self.add_policy(o, origin, label)
                }
            }
            "Deployment" => {
                if let Some(o) = self.decode::<Deployment>(v, &origin, &label) {
                    let t = Some(o.spec.template);
                    self.add_workload(o.metadata, t, &kind, origin, label, "spec.template")
                }
            }
            "ReplicaSet" => {
                if let Some(o) = self.decode::<ReplicaSet>(v, &origin, &label) {
                    let t = o.spec.template;
                    self.add_workload(o.metadata, t, &kind, origin, label, "spec.template")
                }
            }
            "StatefulSet" => {
                if let Some(o) = self.decode::<StatefulSet>(v, &origin, &label) {
                    let t = Some(o.spec.template);
                    self.add_workload(o.metadata, t, &kind, origin, label, "spec.template")
                }
            }
            "DaemonSet" => {
                if let Some(o) = self.decode::<DaemonSet>(v, &origin, &label) {
                    let t = Some(o.spec.template);
                    self.add_workload(o.metadata, t, &kind, origin, label, "spec.template")
                }
            }
            "Job" => {
                if let Some(o) = self.decode::<Job>(v, &origin, &label) {
                    let t = o.spec.map(|s| s.template);
                    self.add_workload(o.metadata, t, &kind, origin, label, "spec.template")
                }
            }
            "CronJob" => {
                if let Some(o) = self.decode::<CronJob>(v, &origin, &label) {
                    let t = o.spec.job_template.spec.map(|s| s.template);
                    self.add_workload(o.metadata, t, &kind, origin, label, "spec.jobTemplate.spec.template")
                }
            }
            _ => {}
        }
    }

    fn decode<T: DeserializeOwned>(&mut self, v: Value, origin: &Origin, label: &str) -> Option<T> {
        match serde_path_to_error::deserialize::<_, T>(v) {
            Ok(o) => Some(o),
            Err(e) => {
                let path = e.path().to_string();
                let field = if path == "." { None } else { Some(path) };
                self.diag(Severity::Error, origin.clone(), Some(label.to_string()), field, e.into_inner().to_string());
                None
            }
        }
    }

    /// Reports field errors; returns true when there were none.
    fn report(&mut self, errs: Errors, origin: &Origin, label: &str) -> bool {
        let ok = errs.0.is_empty();
        for (path, msg) in errs.0 {
            self.diag(Severity::Error, origin.clone(), Some(label.to_string()), Some(path), msg);
        }
        ok
    }

    /// Checks for a duplicate object; reports it and returns false if this one is a duplicate.
    fn first_of(&mut self, kind: &str, ns: &str, name: &str, origin: &Origin, label: &str) -> bool {
        // Workload pods and Pod objects share the pod name space.
        let kind_key = if kind == "Namespace" || kind == "NetworkPolicy" { kind } else { "Pod" };
        let key = (kind_key.to_string(), ns.to_string(), name.to_string());
        if let Some(first) = self.seen.get(&key) {
            let msg = format!("duplicate object: already defined at {first}; this one is ignored");
            self.diag(Severity::Error, origin.clone(), Some(label.to_string()), Some("metadata.name".into()), msg);
            return false;
        }
        self.seen.insert(key, origin.clone());
        true
    }

    fn ns_id(&mut self, name: &str) -> NsId {
        if let Some(&id) = self.ns_index.get(name) {
            return id;
        }
        let id = self.namespaces.len() as NsId;
        let mut labels = Labels::new();
        labels.insert(NAMESPACE_NAME_LABEL.to_string(), name.to_string());
        self.namespaces.push(Namespace { name: name.to_string(), labels, origin: None });
        self.ns_index.insert(name.to_string(), id);
        id
    }

    fn add_namespace(&mut self, o: core::Namespace, origin: Origin, label: String) {
        let mut errs = Errors::default();
        // Namespace names are DNS labels (stricter than the subdomains of other objects).
        let name = meta_name_checked(&o.metadata, &mut errs, selector::check_dns_label);
        let labels = check_labels(o.metadata.labels.as_ref(), "metadata.labels", &mut errs);
        if !self.report(errs, &origin, &label) {
            return;
        }
        let Some(name) = name else { return };
        if !self.first_of("Namespace", "", &name, &origin, &label) {
            return;
        }
        let id = self.ns_id(&name);
        let ns = &mut self.namespaces[id as usize];
        ns.labels = labels;
        // The API server always sets this label to the namespace's name.
        ns.labels.insert(NAMESPACE_NAME_LABEL.to_string(), name);
        ns.origin = Some(origin);
    }

    fn add_workload(
        &mut self,
        meta: ObjectMeta,
        template: Option<core::PodTemplateSpec>,
        kind: &str,
        origin: Origin,
        label: String,
        template_path: &str,
    ) {
        let Some(t) = template else {
            let msg = format!("{kind} has no pod template");
            self.diag(Severity::Error, origin, Some(label), Some(template_path.into()), msg);
            return;
        };
        // The representative pod is named after the workload, in the workload's namespace, with the template's
        // labels and ports.
        let tmeta = t.metadata.unwrap_or_default();
        let pod_meta = ObjectMeta {
            name: meta.name.clone(),
            namespace: meta.namespace.clone(),
            labels: tmeta.labels,
            ..Default::default()
        };
        self.add_pod_at(pod_meta, t.spec, None, kind, origin, label, &format!("{template_path}."));
    }

    fn add_pod(
        &mut self,
        meta: ObjectMeta,
        spec: Option<core::PodSpec>,
        status: Option<core::PodStatus>,
        kind: &str,
        origin: Origin,
        label: String,
    ) {
        self.add_pod_at(meta, spec, status, kind, origin, label, "")
    }

    #[allow(clippy::too_many_arguments)]
    fn add_pod_at(
        &mut self,
        meta: ObjectMeta,
        spec: Option<core::PodSpec>,
        status: Option<core::PodStatus>,
        kind: &str,
        origin: Origin,
        label: String,
        prefix: &str,
    ) {
        let mut errs = Errors::default();
        let name = meta_name(&meta, &mut errs);
        let ns_name = meta_namespace(&meta, &mut errs);
        let labels = check_labels(meta.labels.as_ref(), &format!("{prefix}metadata.labels"), &mut errs);
        let mut ports = Vec::new();
        let mut host_network = false;
        if let Some(spec) = &spec {
            host_network = spec.host_network.unwrap_or(false);
            let mut names: HashMap<String, String> = HashMap::new();
            let sidecars = spec
                .init_containers
                .iter()
                .flatten()
                .enumerate()
                .filter(|(_, c)| c.restart_policy.as_deref() == Some("Always"))
                .map(|(i, c)| (format!("initContainers[{i}]"), c));
            let containers = spec.containers.iter().enumerate().map(|(i, c)| (format!("containers[{i}]"), c));
            for (cpath, c) in containers.chain(sidecars) {
                for (j, p) in c.ports.iter().flatten().enumerate() {
                    let path = format!("{prefix}spec.{cpath}.ports[{j}]");
                    if let Some(cp) = check_container_port(p, &path, &mut errs) {
                        if let Some(n) = &cp.name {
                            if let Some(prev) = names.insert(n.clone(), path.clone()) {
                                errs.add(format!("{path}.name"), format!("duplicate port name `{n}` (also at {prev})"));
                            }
                        }
                        ports.push(cp);
                    }
                }
            }
        }
        let mut ips: Vec<IpAddr> = Vec::new();
        if let Some(st) = &status {
            if let Some(ip) = &st.pod_ip {
                match ip.parse::<IpAddr>() {
                    Ok(a) => ips.push(a),
                    Err(_) => errs.add("status.podIP", format!("invalid IP address `{ip}`")),
                }
            }
            for (i, pip) in st.pod_ips.iter().flatten().enumerate() {
                match pip.ip.parse::<IpAddr>() {
                    Ok(a) if !ips.contains(&a) => ips.push(a),
                    Ok(_) => {}
                    Err(_) => errs.add(format!("status.podIPs[{i}].ip"), format!("invalid IP address `{}`", pip.ip)),
                }
            }
            if ips.len() > 2 || (ips.len() == 2 && ips.first().map(IpAddr::is_ipv4) == ips.get(1).map(IpAddr::is_ipv4))
            {
                errs.add("status.podIPs", "at most one IPv4 and one IPv6 address");
            }
        }
        if !self.report(errs, &origin, &label) {
            return;
        }
        let (Some(name), Some(ns_name)) = (name, ns_name) else {
            return;
        };
        if !self.first_of(kind, &ns_name, &name, &origin, &label) {
            return;
        }
        for ip in &ips {
            let id = self.pods.len() as PodId;
            if let Some(&other) = self.ip_owner.get(ip) {
                let other = &self.pods[other as usize];
                // hostNetwork pods share their node's IP: expected, not worth a warning.
                if host_network || other.host_network {
                    continue;
                }
                let msg =
                    format!("IP {ip} is also the IP of pod {}/{}", self.namespaces[other.ns as usize].name, other.name);
                self.diag(Severity::Warning, origin.clone(), Some(label.clone()), Some("status.podIP".into()), msg);
            } else {
                self.ip_owner.insert(*ip, id);
            }
        }
        let ns = self.ns_id(&ns_name);
        let source = PodSource { kind: kind.to_string(), origin };
        self.pods.push(Pod { ns, name, labels, ports, ips, host_network, source });
    }

    fn add_policy(&mut self, o: net::NetworkPolicy, origin: Origin, label: String) {
        let mut errs = Errors::default();
        let name = meta_name(&o.metadata, &mut errs);
        let ns_name = meta_namespace(&o.metadata, &mut errs);
        let spec = o.spec.unwrap_or_default();
        let pod_selector = match &spec.pod_selector {
            Some(s) => convert_selector(s, "spec.podSelector", &mut errs),
            None => Selector::everything(),
        };
        let ingress: Vec<Rule> = spec
            .ingress
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, r)| {
                let path = format!("spec.ingress[{i}]");
                convert_rule(r.from.as_deref(), r.ports.as_deref(), &path, "from", &mut errs)
            })
            .collect();
        let egress: Vec<Rule> = spec
            .egress
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, r)| {
                let path = format!("spec.egress[{i}]");
                convert_rule(r.to.as_deref(), r.ports.as_deref(), &path, "to", &mut errs)
            })
            .collect();
        let (mut affects_ingress, mut affects_egress) = (false, false);
        match spec.policy_types.as_deref() {
            // Upstream defaulting: Ingress always; Egress iff there is at least one egress rule
            // (`len(spec.Egress) != 0`: an empty `egress: []` does not count).
            None | Some([]) => {
                affects_ingress = true;
                affects_egress = !egress.is_empty();
            }
            Some(types) => {
                if types.len() > 2 {
                    errs.add("spec.policyTypes", "may not have more than 2 entries");
                }
                for (i, t) in types.iter().enumerate() {
                    match t.as_str() {
                        "Ingress" => affects_ingress = true,
                        "Egress" => affects_egress = true,
                        other => errs.add(
                            format!("spec.policyTypes[{i}]"),
                            format!("unsupported value `{other}`: supported values: \"Ingress\", \"Egress\""),
                        ),
                    }
                }
            }
        }
        if !self.report(errs, &origin, &label) {
            return;
        }
        let (Some(name), Some(ns_name)) = (name, ns_name) else {
            return;
        };
        if !self.first_of("NetworkPolicy", &ns_name, &name, &origin, &label) {
            return;
        }
        let ns = self.ns_id(&ns_name);
        self.policies.push(Policy { ns, name, pod_selector, ingress, egress, affects_ingress, affects_egress, origin });
    }

    /// Ends loading. Namespaces referenced by a selector-free reference (a pod's or policy's namespace) exist
    /// implicitly with their automatic label.
    pub fn finish(self) -> Loaded {
        Loaded {
            cluster: Cluster { namespaces: self.namespaces, pods: self.pods, policies: self.policies },
            diagnostics: self.diagnostics,
            skipped_kinds: self.skipped_kinds,
        }
    }
}

/// Loads a single input (convenience for tests and tools).
pub fn load_str(name: &str, text: &str) -> Loaded {
    let mut l = Loader::new();
    l.add_bytes(name, text.as_bytes());
    l.finish()
}

fn object_label(kind: &str, meta: Option<&Value>) -> String {
    let name = meta.and_then(|m| m.get("name")).and_then(Value::as_str);
    let ns = meta.and_then(|m| m.get("namespace")).and_then(Value::as_str);
    match (ns, name) {
        (_, None) => kind.to_string(),
        (Some(ns), Some(n)) if kind != "Namespace" => format!("{kind} {ns}/{n}"),
        (None, Some(n)) if kind != "Namespace" => format!("{kind} default/{n}"),
        (_, Some(n)) => format!("{kind} {n}"),
    }
}

fn meta_name(meta: &ObjectMeta, errs: &mut Errors) -> Option<String> {
    meta_name_checked(meta, errs, selector::check_dns_subdomain)
}

fn meta_name_checked(meta: &ObjectMeta, errs: &mut Errors, check: fn(&str) -> Result<(), String>) -> Option<String> {
    match &meta.name {
        None => {
            errs.add("metadata.name", "name is required");
            None
        }
        Some(n) => {
            if let Err(e) = check(n) {
                errs.add("metadata.name", e);
            }
            Some(n.clone())
        }
    }
}

fn meta_namespace(meta: &ObjectMeta, errs: &mut Errors) -> Option<String> {
    let ns = meta.namespace.clone().unwrap_or_else(|| "default".to_string());
    if let Err(e) = selector::check_dns_label(&ns) {
        errs.add("metadata.namespace", e);
        return None;
    }
    Some(ns)
}

fn check_labels(labels: Option<&BTreeMap<String, String>>, path: &str, errs: &mut Errors) -> Labels {
    let mut out = Labels::new();
    for (k, v) in labels.into_iter().flatten() {
        let mut ok = true;
        if let Err(e) = selector::check_label_key(k) {
            errs.add(path, e);
            ok = false;
        }
        if let Err(e) = selector::check_label_value(v) {
            errs.add(format!("{path}.{k}"), e);
            ok = false;
        }
        if ok {
            out.insert(k.clone(), v.clone());
        }
    }
    out
}

fn check_protocol(p: Option<&str>, path: &str, errs: &mut Errors) -> Option<Protocol> {
    match p {
        None => Some(Protocol::Tcp),
        Some(s) => match Protocol::parse_exact(s) {
            Some(p) => Some(p),
            None => {
                errs.add(path, format!("unsupported value `{s}`: supported values: \"SCTP\", \"TCP\", \"UDP\""));
                None
            }
        },
    }
}

fn check_container_port(p: &core::ContainerPort, path: &str, errs: &mut Errors) -> Option<ContainerPort> {
    let protocol = check_protocol(p.protocol.as_deref(), &format!("{path}.protocol"), errs);
    let port = match u16::try_from(p.container_port) {
        Ok(n) if n >= 1 => Some(n),
        _ => {
            errs.add(
                format!("{path}.containerPort"),
                format!("must be between 1 and 65535, inclusive (got {})", p.container_port),
            );
            None
        }
    };
    if let Some(n) = &p.name {
        if let Err(e) = selector::check_port_name(n) {
            errs.add(format!("{path}.name"), e);
            return None;
        }
    }
    Some(ContainerPort { name: p.name.clone(), port: port?, protocol: protocol? })
}

/// Converts and validates a `LabelSelector` (apimachinery's ValidateLabelSelector rules).
fn convert_selector(s: &LabelSelector, path: &str, errs: &mut Errors) -> Selector {
    let mut reqs = Vec::new();
    for (k, v) in s.match_labels.iter().flatten() {
        let mut ok = true;
        if let Err(e) = selector::check_label_key(k) {
            errs.add(format!("{path}.matchLabels"), e);
            ok = false;
        }
        if let Err(e) = selector::check_label_value(v) {
            errs.add(format!("{path}.matchLabels.{k}"), e);
            ok = false;
        }
        if ok {
            reqs.push(Requirement::In(k.clone(), vec![v.clone()]));
        }
    }
    for (i, e) in s.match_expressions.iter().flatten().enumerate() {
        let epath = format!("{path}.matchExpressions[{i}]");
        if let Err(msg) = selector::check_label_key(&e.key) {
            errs.add(format!("{epath}.key"), msg);
            continue;
        }
        let values = e.values.clone().unwrap_or_default();
        for (j, v) in values.iter().enumerate() {
            if let Err(msg) = selector::check_label_value(v) {
                errs.add(format!("{epath}.values[{j}]"), msg);
            }
        }
        let key = e.key.clone();
        match e.operator.as_str() {
            "In" | "NotIn" => {
                if values.is_empty() {
                    errs.add(format!("{epath}.values"), format!("must be specified when `operator` is '{}'", e.operator));
                    continue;
                }
                reqs.push(if e.operator == "In" { Requirement::In(key, values) } else { Requirement::NotIn(key, values) });
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    errs.add(format!("{epath}.values"), format!("may not be specified when `operator` is '{}'", e.operator));
                    continue;
                }
                reqs.push(if e.operator == "Exists" { Requirement::Exists(key) } else { Requirement::DoesNotExist(key) });
            }
            other => errs.add(
                format!("{epath}.operator"),
                format!("not a valid selector operator `{other}`: supported values: \"In\", \"NotIn\", \"Exists\", \"DoesNotExist\""),
            ),
        }
    }
    Selector::from_requirements(reqs)
}

fn convert_rule(
    peers: Option<&[net::NetworkPolicyPeer]>,
    ports: Option<&[net::NetworkPolicyPort]>,
    path: &str,
    peer_field: &str,
    errs: &mut Errors,
) -> Rule {
    let mut rule = Rule::default();
    for (i, p) in peers.into_iter().flatten().enumerate() {
        let ppath = format!("{path}.{peer_field}[{i}]");
        let has_sel = p.pod_selector.is_some() || p.namespace_selector.is_some();
        match (&p.ip_block, has_sel) {
            (None, false) => errs.add(ppath, "must specify a peer (podSelector, namespaceSelector or ipBlock)"),
            (Some(_), true) => errs.add(ppath, "may not specify both ipBlock and another peer"),
            (Some(b), false) => {
                if let Some(b) = convert_ip_block(b, &format!("{ppath}.ipBlock"), errs) {
                    rule.peers.push(Peer::IpBlock(b));
                }
            }
            (None, true) => {
                let namespaces = p
                    .namespace_selector
                    .as_ref()
                    .map(|s| convert_selector(s, &format!("{ppath}.namespaceSelector"), errs));
                let pods = p.pod_selector.as_ref().map(|s| convert_selector(s, &format!("{ppath}.podSelector"), errs));
                rule.peers.push(Peer::Selectors { namespaces, pods });
            }
        }
    }
    for (i, p) in ports.into_iter().flatten().enumerate() {
        let ppath = format!("{path}.ports[{i}]");
        let protocol = check_protocol(p.protocol.as_deref(), &format!("{ppath}.protocol"), errs);
        let port = match (&p.port, p.end_port) {
            (None, Some(_)) => {
                errs.add(format!("{ppath}.endPort"), "may not be specified when `port` is not specified");
                None
            }
            (None, None) => Some(PortMatch::Any),
            (Some(IntOrString::String(name)), end) => {
                if end.is_some() {
                    errs.add(format!("{ppath}.endPort"), "may not be specified when `port` is non-numeric");
                    None
                } else if let Err(e) = selector::check_port_name(name) {
                    errs.add(format!("{ppath}.port"), e);
                    None
                } else {
                    Some(PortMatch::Named(name.clone()))
                }
            }
            (Some(IntOrString::Int(n)), end) => {
                let lo = match u16::try_from(*n) {
                    Ok(v) if v >= 1 => Some(v),
                    _ => {
                        errs.add(format!("{ppath}.port"), format!("must be between 1 and 65535, inclusive (got {n})"));
                        None
                    }
                };
                let hi = match end {
                    None => lo,
                    Some(e) => match (u16::try_from(e), lo) {
                        (Ok(e16), Some(l)) if e16 >= l => Some(e16),
                        // `port` is already reported; a valid endPort adds no second error.
                        (Ok(e16), None) if e16 >= 1 => None,
                        (Ok(_), Some(l)) if e <= 65535 => {
                            errs.add(
                                format!("{ppath}.endPort"),
                                format!("must be greater than or equal to `port` ({l}) (got {e})"),
                            );
                            None
                        }
                        _ => {
                            errs.add(
                                format!("{ppath}.endPort"),
                                format!("must be between 1 and 65535, inclusive (got {e})"),
                            );
                            None
                        }
                    },
                };
                match (lo, hi) {
                    (Some(l), Some(h)) => Some(PortMatch::Range(l, h)),
                    _ => None,
                }
            }
        };
        if let (Some(protocol), Some(port)) = (protocol, port) {
            rule.ports.push(PolicyPort { protocol, port });
        }
    }
    rule
}

fn parse_cidr(s: &str) -> Option<IpNet> {
    // Go's net.ParseCIDR: address/prefix, no surrounding spaces. Host bits are allowed and masked.
    let (addr, len) = s.split_once('/')?;
    let ip: IpAddr = addr.parse().ok()?;
    if len.is_empty() || !len.chars().all(|c| c.is_ascii_digit()) || len.len() > 3 {
        return None;
    }
    let len: u8 = len.parse().ok()?;
    IpNet::new(ip, len).ok().map(|n| n.trunc())
}

fn convert_ip_block(b: &net::IPBlock, path: &str, errs: &mut Errors) -> Option<IpBlock> {
    let Some(cidr) = parse_cidr(&b.cidr) else {
        errs.add(
            format!("{path}.cidr"),
            format!("must be a valid CIDR (e.g. 10.0.0.0/8 or fd00::/8), got `{}`", b.cidr),
        );
        return None;
    };
    let mut except = Vec::new();
    let mut ok = true;
    for (i, e) in b.except.iter().flatten().enumerate() {
        let epath = format!("{path}.except[{i}]");
        match parse_cidr(e) {
            None => {
                errs.add(epath, format!("must be a valid CIDR, got `{e}`"));
                ok = false;
            }
            Some(n) => {
                // API server: the except network address must be in cidr, with a strictly longer prefix.
                if !cidr.contains(&n.network()) || n.prefix_len() <= cidr.prefix_len() || !same_family(&cidr, &n) {
                    errs.add(epath, format!("`{e}` must be a strict subset of `cidr` ({})", b.cidr));
                    ok = false;
                } else {
                    except.push(n);
                }
            }
        }
    }
    except.sort();
    except.dedup();
    ok.then_some(IpBlock { cidr, except })
}

fn same_family(a: &IpNet, b: &IpNet) -> bool {
    matches!((a, b), (IpNet::V4(_), IpNet::V4(_)) | (IpNet::V6(_), IpNet::V6(_)))
}

/// Parses and validates a label selector given as JSON/YAML value (`{matchLabels: ..., matchExpressions: ...}`),
/// for tools outside manifests (assertion files, what-if requests). Errors are `(field path, message)` pairs, the
/// path starting with `path`.
pub fn parse_selector(v: &Value, path: &str) -> Result<Selector, Vec<(String, String)>> {
    let ls: LabelSelector = match serde_path_to_error::deserialize(v.clone()) {
        Ok(s) => s,
        Err(e) => {
            let field = e.path().to_string();
            let field = if field == "." { path.to_string() } else { format!("{path}.{field}") };
            return Err(vec![(field, e.into_inner().to_string())]);
        }
    };
    let mut errs = Errors::default();
    let sel = convert_selector(&ls, path, &mut errs);
    if errs.0.is_empty() {
        Ok(sel)
    } else {
        Err(errs.0)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod parallel_yaml_tests {
    use super::*;

    /// The parallel path delivers a prefix of the stream's documents, all of them when it finishes; it gives up
    /// only on a syntax error, on a text it cannot split, or when there is a single document.
    fn same_as_sequential(text: &str) {
        let merge = text.contains("<<");
        // Up to and including the first syntax error (the parser does not resynchronise after one).
        let mut stream: Vec<Option<Value>> = Vec::new();
        for de in serde_yaml_ng::Deserializer::from_str(text) {
            let d = parse_yaml_document(de, merge).ok();
            let end = d.is_none();
            stream.push(d);
            if end {
                break;
            }
        }
        let valid: Vec<Value> = stream.iter().map_while(|d| d.clone()).collect();
        for threads in 1..=4 {
            let (got, done) = parse_yaml_parallel_for_tests(text, threads);
            assert_eq!(got[..], valid[..got.len().min(valid.len())], "{text:?} with {threads} threads");
            assert!(got.len() <= valid.len(), "{text:?}: more documents than the stream has valid ones");
            if done {
                assert_eq!(got, valid, "{text:?} with {threads} threads");
                assert_eq!(valid.len(), stream.len(), "{text:?}: finished despite a syntax error");
            } else {
                let single = stream.len() <= 1;
                let error = valid.len() < stream.len();
                assert!(single || error || split_yaml_documents(text).is_none(), "{text:?}: gave up");
            }
        }
    }

    #[test]
    fn splitting_at_document_markers_gives_the_stream_documents() {
        let cases = [
            "",
            "a: 1\n",
            "a: 1\n---\nb: 2\n",
            "---\na: 1\n---\nb: 2\n",
            "# comment only\n---\na: 1\n",
            "# comment only\n",
            "---\n---\na: 1\n---\n",
            "a: 1\n---\n",
            "--- |\n  text\n---\nb: 2\n",
            "--- {a: 1}\n--- [1, 2]\n",
            "a: |\n  ----\n  --- not at column 0\nb: 2\n",
            "----\n",
            "---a\n",
            "a: 1\r\n--- \r\nb: 2\r\n",
            "\u{feff}a: 1\n---\nb: 2",
            "base: &b {x: 1}\nm:\n  <<: *b\n  y: 2\n---\nc: 3\n",
            "a: 'multi\n  line'\n---\nb: \"q\n  r\"\n",
            "a: [1,\n---\nb: 2\n",
            "a: 1\n---\nb: : :\n---\nc: 3\n",
            "%YAML 1.2\n---\na: 1\n",
            "a: 1\n...\n---\nb: 2\n",
            "kind: List\nitems:\n- a: 1\n---\nkind: Pod\n",
        ];
        for c in cases {
            same_as_sequential(c);
        }
    }

    #[test]
    fn the_repository_fixtures_parse_the_same() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut files = Vec::new();
        let mut dirs = vec![root.join("tests/data"), root.join("examples")];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    dirs.push(p);
                } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
                    files.push(p);
                }
            }
        }
        assert!(files.len() > 10, "{files:?}");
        for f in files {
            same_as_sequential(&std::fs::read_to_string(&f).unwrap());
        }
    }
}
