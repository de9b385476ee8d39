//! The in-memory object store: objects, the global revision, the event history and the open watches.
//!
//! Architecture invariant: the store does no I/O and never blocks. Watches are fed through unbounded
//! channels while the store's lock is held, so every watch sees every event after its start revision exactly
//! once and in order, whichever thread changes the store.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use axum::body::Bytes;
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use crate::kind::{Api, Kind};

/// The first revision of a new store. Revision 0 means "any" on the wire, so the store never reports it.
pub(crate) const FIRST_REVISION: u64 = 1;

/// Why [`FakeApiServer::try_put`](crate::FakeApiServer::try_put) refused an object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PutError {
    /// The value is not a JSON object.
    #[error("the object is not a JSON object")]
    NotAnObject,
    /// There is no string `kind` field.
    #[error("the object has no string `kind`")]
    MissingKind,
    /// The kind is not one the server stores.
    #[error(
        "kind `{0}` is not served: only Namespace, Pod, NetworkPolicy, Node, ServiceAccount, the \
         policy.networking.k8s.io kinds and Calico's are"
    )]
    UnknownKind(String),
    /// The kind is not served now: a CRD that is not installed ([`FakeApiServer::set_crds_installed`],
    /// [`FakeApiServer::set_calico`], [`FakeApiServer::set_served`]), as a real apiserver answers 404 to a create.
    ///
    /// [`FakeApiServer::set_crds_installed`]: crate::FakeApiServer::set_crds_installed
    /// [`FakeApiServer::set_calico`]: crate::FakeApiServer::set_calico
    /// [`FakeApiServer::set_served`]: crate::FakeApiServer::set_served
    #[error("kind `{0}` is not served: its CustomResourceDefinition (or API service) is not installed")]
    NotInstalled(Kind),
    /// `apiVersion` is present but is not the one of the kind.
    #[error("apiVersion {found} does not belong to kind `{kind}`: expected `{expected}`")]
    WrongApiVersion {
        /// The kind named by the object.
        kind: Kind,
        /// The `apiVersion` value found, as JSON.
        found: String,
        /// The `apiVersion` the kind has.
        expected: &'static str,
    },
    /// `metadata` is present but is not a JSON object.
    #[error("`metadata` is not a JSON object")]
    MetadataNotAnObject,
    /// `metadata.name` is missing or empty.
    #[error("the object has no `metadata.name`")]
    MissingName,
    /// A namespaced object has no `metadata.namespace`.
    #[error("{kind} `{name}` is namespaced but has no `metadata.namespace`")]
    MissingNamespace {
        /// The kind of the object.
        kind: Kind,
        /// Its `metadata.name`.
        name: String,
    },
}

/// Why a read at a given revision (a list page or a watch start) cannot be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadError {
    /// The revision is older than the compaction point: the history to serve it is gone (HTTP 410).
    Expired { requested: u64, compacted: u64 },
    /// The revision is newer than anything the store has seen (HTTP 504 on a real apiserver).
    TooLarge { requested: u64, current: u64 },
}

/// Identifies a stored object. Cluster-scoped objects have an empty namespace.
///
/// The derived order (kind, namespace, name) is the order of list responses, as with a real apiserver's keys.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct ObjectKey {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
}

/// A field a selector may test. Only the two fields that every kind supports are served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Field {
    Name,
    Namespace,
}

/// One `field=value` or `field!=value` term of a field selector (the request path's namespace is one too).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FieldTerm {
    pub field: Field,
    pub value: String,
    pub negated: bool,
}

/// The set of objects a list or watch covers: one kind, narrowed by field terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Scope {
    pub kind: Kind,
    pub terms: Vec<FieldTerm>,
}

impl Scope {
    pub(crate) fn matches(&self, key: &ObjectKey) -> bool {
        key.kind == self.kind
            && self.terms.iter().all(|term| {
                let actual = match term.field {
                    Field::Name => &key.name,
                    Field::Namespace => &key.namespace,
                };
                (actual == &term.value) != term.negated
            })
    }
}

/// Where a new watch starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WatchFrom {
    /// Synthetic ADDED events for the current state, then changes. With `initial_events_end`, a BOOKMARK
    /// annotated `k8s.io/initial-events-end` follows the synthetic events (a streaming list).
    Current { initial_events_end: bool },
    /// Every change after the given revision, replayed from the history, then live changes.
    After(u64),
}

/// What the HTTP layer streams to one watch.
#[derive(Debug)]
pub(crate) enum WatchMsg {
    /// One event, a JSON document followed by a newline.
    Line(Bytes),
    /// Close the connection without ending the chunked body.
    Abort,
}

/// A watch just registered: the events to send first, then whatever arrives on `rx`.
pub(crate) struct Subscription {
    pub id: u64,
    pub backlog: Vec<Bytes>,
    pub rx: mpsc::UnboundedReceiver<WatchMsg>,
}

struct Subscriber {
    scope: Scope,
    bookmarks: bool,
    tx: mpsc::UnboundedSender<WatchMsg>,
}

/// One change, kept until the next compaction.
struct HistoryEntry {
    revision: u64,
    key: ObjectKey,
    /// The watch event as sent.
    line: Bytes,
    /// The object before the change (`None` for a creation): lets a list be served as of an older revision.
    previous: Option<Value>,
}

/// Everything the server knows. Callers hold it behind one mutex.
pub(crate) struct Store {
    revision: u64,
    /// The oldest revision a watch or a paginated list may start from. The history holds every change after it.
    compacted: u64,
    objects: BTreeMap<ObjectKey, Value>,
    history: Vec<HistoryEntry>,
    next_uid: u64,
    subscribers: HashMap<u64, Subscriber>,
    next_watch_id: u64,
    /// Whether the `policy.networking.k8s.io` CRDs ([`Api::PolicyCrd`]) are installed.
    crds_installed: bool,
    /// Which of Calico's APIs are served.
    calico: Calico,
    /// Whether Cilium's CRDs ([`Api::CiliumCrd`]) are installed.
    cilium: bool,
    /// Whether Antrea's CRDs ([`Api::AntreaCrd`]) are installed.
    antrea: bool,
    /// Kinds taken out one by one ([`Store::set_served`]).
    removed: BTreeSet<Kind>,
    /// Kinds every request for which is refused with 403 Forbidden.
    forbidden: BTreeSet<Kind>,
}

/// Which of Calico's APIs the server serves: see [`FakeApiServer::set_calico`](crate::FakeApiServer::set_calico).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Calico {
    /// Calico is not installed (the default).
    #[default]
    None,
    /// Calico's CRDs (`crd.projectcalico.org/v1`): a cluster with Calico and without its API server.
    Crds,
    /// Calico's CRDs and its API server (`projectcalico.org/v3`, an aggregated API). Objects of the two groups
    /// are stored apart: a real Calico API server keeps its objects in the CRDs (so each shows in both groups),
    /// which this server does not model.
    ApiServer,
}

impl Store {
    pub(crate) fn new() -> Store {
        Store {
            revision: FIRST_REVISION,
            compacted: FIRST_REVISION,
            objects: BTreeMap::new(),
            history: Vec::new(),
            next_uid: 1,
            subscribers: HashMap::new(),
            next_watch_id: 1,
            crds_installed: true,
            calico: Calico::None,
            cilium: false,
            antrea: false,
            removed: BTreeSet::new(),
            forbidden: BTreeSet::new(),
        }
    }

    /// Whether `kind` is served: a built-in kind, or a CRD or API service that is installed.
    pub(crate) fn serves(&self, kind: Kind) -> bool {
        let installed = match kind.api() {
            Api::BuiltIn => true,
            Api::PolicyCrd => self.crds_installed,
            Api::CalicoCrd => self.calico != Calico::None,
            Api::CalicoApiServer => self.calico == Calico::ApiServer,
            Api::CiliumCrd => self.cilium,
            Api::AntreaCrd => self.antrea,
        };
        installed && !self.removed.contains(&kind)
    }

    /// Changes what is served with `change`. Kinds no longer served lose their objects (DELETED events, as a
    /// CRD's finalizer deletes every custom resource) and then their watches end (cleanly, as the apiserver ends
    /// them when it stops serving the resource); from then on their paths answer 404.
    fn reconfigure(&mut self, change: impl FnOnce(&mut Store)) {
        let before: Vec<Kind> = Kind::ALL.into_iter().filter(|k| self.serves(*k)).collect();
        change(self);
        let gone: Vec<Kind> = before.into_iter().filter(|k| !self.serves(*k)).collect();
        if gone.is_empty() {
            return;
        }
        let keys: Vec<ObjectKey> = self.objects.keys().filter(|k| gone.contains(&k.kind)).cloned().collect();
        for key in keys {
            self.delete(&key);
        }
        // Dropping a watch's sender ends its stream after what was already sent.
        self.subscribers.retain(|_, sub| !gone.contains(&sub.scope.kind));
    }

    /// Installs or removes the `policy.networking.k8s.io` CRDs (see [`Store::reconfigure`]).
    pub(crate) fn set_crds_installed(&mut self, installed: bool) {
        self.reconfigure(|s| s.crds_installed = installed);
    }

    /// Which of Calico's APIs are served (see [`Store::reconfigure`]).
    pub(crate) fn set_calico(&mut self, calico: Calico) {
        self.reconfigure(|s| s.calico = calico);
    }

    /// Installs or removes Cilium's CRDs (see [`Store::reconfigure`]).
    pub(crate) fn set_cilium(&mut self, installed: bool) {
        self.reconfigure(|s| s.cilium = installed);
    }

    /// Installs or removes Antrea's CRDs (see [`Store::reconfigure`]).
    pub(crate) fn set_antrea(&mut self, installed: bool) {
        self.reconfigure(|s| s.antrea = installed);
    }

    /// Takes one CRD or API kind out (or puts it back), whatever else serves it (see [`Store::reconfigure`]).
    pub(crate) fn set_served(&mut self, kind: Kind, served: bool) {
        self.reconfigure(|s| {
            if served {
                s.removed.remove(&kind);
            } else {
                s.removed.insert(kind);
            }
        });
    }

    /// Refuses every request for `kind` with 403 Forbidden (or stops refusing them).
    pub(crate) fn set_forbidden(&mut self, kind: Kind, forbidden: bool) {
        if forbidden {
            self.forbidden.insert(kind);
        } else {
            self.forbidden.remove(&kind);
        }
    }

    pub(crate) fn is_forbidden(&self, kind: Kind) -> bool {
        self.forbidden.contains(&kind)
    }

    pub(crate) fn revision(&self) -> u64 {
        self.revision
    }

    /// Creates or replaces an object; `now` becomes the creation timestamp of a new one.
    pub(crate) fn put(&mut self, obj: Value, now: &str) -> Result<u64, PutError> {
        let (key, obj) = self.admit(obj)?;
        let obj = self.prepare(&key, obj, now);
        Ok(self.commit(key, obj))
    }

    /// Checks an object the way [`put`](Self::put) does and finds its key: its kind (from `kind` and `apiVersion`,
    /// which is filled in when missing) must be served, it needs a name, and a namespace when its kind is
    /// namespaced (a cluster-scoped object loses any namespace it has).
    pub(crate) fn admit(&self, obj: Value) -> Result<(ObjectKey, Value), PutError> {
        let Value::Object(mut obj) = obj else {
            return Err(PutError::NotAnObject);
        };
        let kind_name = obj.get("kind").and_then(Value::as_str).ok_or(PutError::MissingKind)?;
        let first = Kind::from_kind_name(kind_name).ok_or_else(|| PutError::UnknownKind(kind_name.to_owned()))?;
        let kind = match obj.get("apiVersion") {
            None => {
                obj.insert("apiVersion".to_owned(), Value::from(first.api_version()));
                first
            }
            Some(Value::String(v)) => match Kind::from_api_version(v, kind_name) {
                Some(kind) => kind,
                None => {
                    let found = Value::from(v.as_str()).to_string();
                    return Err(PutError::WrongApiVersion { kind: first, found, expected: first.api_version() });
                }
            },
            Some(other) => {
                return Err(PutError::WrongApiVersion {
                    kind: first,
                    found: other.to_string(),
                    expected: first.api_version(),
                })
            }
        };
        if !self.serves(kind) {
            return Err(PutError::NotInstalled(kind));
        }
        let metadata = obj
            .entry("metadata")
            .or_insert_with(|| Value::Object(Map::new()))
            .as_object_mut()
            .ok_or(PutError::MetadataNotAnObject)?;
        let name = non_empty_str(metadata, "name").ok_or(PutError::MissingName)?;
        let namespace = if kind.is_namespaced() {
            non_empty_str(metadata, "namespace")
                .ok_or_else(|| PutError::MissingNamespace { kind, name: name.clone() })?
        } else {
            // A real apiserver drops the namespace of a cluster-scoped object too.
            metadata.remove("namespace");
            String::new()
        };
        Ok((ObjectKey { kind, namespace, name }, Value::Object(obj)))
    }

    /// The object as [`commit`](Self::commit) would store it under `key` now: `resourceVersion` the next revision,
    /// `uid` and `creationTimestamp` those of the stored object it replaces, or new ones (`now`). Changes nothing,
    /// so a dry run answers with it.
    pub(crate) fn prepare(&self, key: &ObjectKey, mut obj: Value, now: &str) -> Value {
        let old_meta = self.objects.get(key).and_then(|p| p.get("metadata"));
        let uid = match old_meta.and_then(|m| m.get("uid")) {
            Some(uid) => uid.clone(),
            None => Value::from(format!("00000000-0000-4000-8000-{:012x}", self.next_uid)),
        };
        let created = old_meta.and_then(|m| m.get("creationTimestamp")).cloned().unwrap_or_else(|| Value::from(now));
        if let Some(metadata) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            metadata.insert("resourceVersion".to_owned(), Value::from((self.revision + 1).to_string()));
            metadata.insert("uid".to_owned(), uid);
            metadata.insert("creationTimestamp".to_owned(), created);
        }
        obj
    }

    /// Stores an object [`prepare`](Self::prepare)d just before (with no change in between), emits ADDED or
    /// MODIFIED, and returns the new revision.
    pub(crate) fn commit(&mut self, key: ObjectKey, object: Value) -> u64 {
        let revision = self.revision + 1;
        let previous = self.objects.insert(key.clone(), object.clone());
        let event = if previous.is_some() { "MODIFIED" } else { "ADDED" };
        if previous.is_none() {
            self.next_uid += 1;
        }
        let line = event_line(event, &object);
        self.record(revision, key, line, previous);
        revision
    }

    /// The object a [`delete`](Self::delete) of `key` now would leave in its DELETED event: its last state with
    /// the deletion's revision.
    pub(crate) fn last_state(&self, key: &ObjectKey) -> Option<Value> {
        let mut last = self.objects.get(key)?.clone();
        if let Some(meta) = last.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("resourceVersion".to_owned(), Value::from((self.revision + 1).to_string()));
        }
        Some(last)
    }

    /// Deletes an object; the DELETED event carries its last state with the deletion's revision, as a real
    /// apiserver's does, so that a watch resumed from that event's revision does not see it again.
    pub(crate) fn delete(&mut self, key: &ObjectKey) -> Option<u64> {
        let last = self.last_state(key)?;
        let previous = self.objects.remove(key)?;
        let revision = self.revision + 1;
        let line = event_line("DELETED", &last);
        self.record(revision, key.clone(), line, Some(previous));
        Some(revision)
    }

    fn record(&mut self, revision: u64, key: ObjectKey, line: Bytes, previous: Option<Value>) {
        self.revision = revision;
        self.subscribers.retain(|_, sub| !sub.scope.matches(&key) || sub.tx.send(WatchMsg::Line(line.clone())).is_ok());
        self.history.push(HistoryEntry { revision, key, line, previous });
    }

    /// Makes the store hold exactly `objs`: each put (an object refused is counted, not stored), every other
    /// object deleted. Returns (put, deleted, refused).
    pub(crate) fn replace_all(&mut self, objs: Vec<Value>, now: &str) -> (usize, usize, usize) {
        let mut keep = BTreeSet::new();
        let (mut put, mut refused) = (0, 0);
        for obj in objs {
            match self.admit(obj) {
                Ok((key, obj)) => {
                    let obj = self.prepare(&key, obj, now);
                    keep.insert(key.clone());
                    self.commit(key, obj);
                    put += 1;
                }
                Err(_) => refused += 1,
            }
        }
        let gone: Vec<ObjectKey> = self.objects.keys().filter(|k| !keep.contains(*k)).cloned().collect();
        for key in &gone {
            self.delete(key);
        }
        (put, gone.len(), refused)
    }

    /// Forgets the history: reads at any earlier revision now fail with [`ReadError::Expired`].
    pub(crate) fn compact(&mut self) {
        self.compacted = self.revision;
        self.history.clear();
    }

    pub(crate) fn get(&self, key: &ObjectKey) -> Option<&Value> {
        self.objects.get(key)
    }

    /// The objects in `scope` as they were at revision `at`, in key order.
    pub(crate) fn list(&self, scope: &Scope, at: u64) -> Result<Vec<Value>, ReadError> {
        self.check_readable(at)?;
        let mut view: BTreeMap<&ObjectKey, &Value> =
            self.objects.iter().filter(|(key, _)| scope.matches(key)).collect();
        for entry in self.history.iter().rev().take_while(|e| e.revision > at) {
            if !scope.matches(&entry.key) {
                continue;
            }
            match &entry.previous {
                Some(previous) => view.insert(&entry.key, previous),
                None => view.remove(&entry.key),
            };
        }
        Ok(view.into_values().cloned().collect())
    }

    fn check_readable(&self, at: u64) -> Result<(), ReadError> {
        if at < self.compacted {
            Err(ReadError::Expired { requested: at, compacted: self.compacted })
        } else if at > self.revision {
            Err(ReadError::TooLarge { requested: at, current: self.revision })
        } else {
            Ok(())
        }
    }

    /// Registers a watch. Its backlog and its channel together hold every event after its start, once.
    pub(crate) fn watch(&mut self, scope: Scope, from: WatchFrom, bookmarks: bool) -> Result<Subscription, ReadError> {
        let mut backlog = Vec::new();
        match from {
            WatchFrom::Current { initial_events_end } => {
                backlog.extend(
                    self.objects.iter().filter(|(key, _)| scope.matches(key)).map(|(_, obj)| event_line("ADDED", obj)),
                );
                if initial_events_end {
                    backlog.push(bookmark_line(scope.kind, self.revision, true));
                }
            }
            WatchFrom::After(start) => {
                self.check_readable(start)?;
                backlog.extend(
                    self.history.iter().filter(|e| e.revision > start && scope.matches(&e.key)).map(|e| e.line.clone()),
                );
            }
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let id = self.next_watch_id;
        self.next_watch_id += 1;
        self.subscribers.insert(id, Subscriber { scope, bookmarks, tx });
        Ok(Subscription { id, backlog, rx })
    }

    /// Forgets a watch whose stream has ended.
    pub(crate) fn unsubscribe(&mut self, id: u64) {
        self.subscribers.remove(&id);
    }

    /// Tells every watch to drop its connection, and forgets them all.
    pub(crate) fn abort_watches(&mut self) {
        for (_, sub) in self.subscribers.drain() {
            // A watch whose client is already gone has nothing left to abort.
            let _ = sub.tx.send(WatchMsg::Abort);
        }
    }

    /// Sends a BOOKMARK at the current revision to every watch that allowed bookmarks.
    pub(crate) fn send_bookmarks(&mut self) {
        let revision = self.revision;
        self.subscribers.retain(|_, sub| {
            !sub.bookmarks || sub.tx.send(WatchMsg::Line(bookmark_line(sub.scope.kind, revision, false))).is_ok()
        });
    }

    /// The watches whose stream is still open, as far as the server can tell.
    pub(crate) fn open_watches(&mut self) -> usize {
        self.subscribers.retain(|_, sub| !sub.tx.is_closed());
        self.subscribers.len()
    }
}

fn non_empty_str(map: &Map<String, Value>, field: &str) -> Option<String> {
    map.get(field).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned)
}

/// One watch event as it goes on the wire: `{"type":..,"object":..}` and a newline. Written by hand to keep
/// `type` first, as a real apiserver does (serde_json's maps sort their keys).
pub(crate) fn event_line(event_type: &str, object: &Value) -> Bytes {
    Bytes::from(format!("{{\"type\":{},\"object\":{object}}}\n", Value::from(event_type)))
}

fn bookmark_line(kind: Kind, revision: u64, initial_events_end: bool) -> Bytes {
    let mut metadata = json!({ "resourceVersion": revision.to_string() });
    if initial_events_end {
        metadata["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
    }
    let object = json!({ "kind": kind.name(), "apiVersion": kind.api_version(), "metadata": metadata });
    event_line("BOOKMARK", &object)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use super::*;

    const NOW: &str = "2024-01-01T00:00:00Z";

    fn pod(ns: &str, name: &str, image: &str) -> Value {
        json!({
            "kind": "Pod",
            "metadata": {"namespace": ns, "name": name},
            "spec": {"containers": [{"name": "c", "image": image}]},
        })
    }

    fn key(ns: &str, name: &str) -> ObjectKey {
        ObjectKey { kind: Kind::Pod, namespace: ns.to_owned(), name: name.to_owned() }
    }

    fn all_pods() -> Scope {
        Scope { kind: Kind::Pod, terms: Vec::new() }
    }

    fn names(objs: &[Value]) -> Vec<String> {
        objs.iter().map(|o| o["metadata"]["name"].as_str().unwrap().to_owned()).collect()
    }

    fn drain(sub: &mut Subscription) -> Vec<Value> {
        let mut out: Vec<Value> = sub.backlog.drain(..).map(|l| serde_json::from_slice(&l).unwrap()).collect();
        while let Ok(WatchMsg::Line(l)) = sub.rx.try_recv() {
            out.push(serde_json::from_slice(&l).unwrap());
        }
        out
    }

    #[test]
    fn put_sets_server_fields_and_keeps_uid_on_replace() {
        let mut store = Store::new();
        let rv1 = store.put(pod("a", "p", "v1"), NOW).unwrap();
        assert_eq!(rv1, FIRST_REVISION + 1);
        let first = store.get(&key("a", "p")).unwrap().clone();
        assert_eq!(first["apiVersion"], "v1");
        assert_eq!(first["metadata"]["resourceVersion"], rv1.to_string());
        assert_eq!(first["metadata"]["creationTimestamp"], NOW);
        let rv2 = store.put(pod("a", "p", "v2"), "2030-01-01T00:00:00Z").unwrap();
        let second = store.get(&key("a", "p")).unwrap();
        assert_eq!(second["metadata"]["uid"], first["metadata"]["uid"]);
        assert_eq!(second["metadata"]["creationTimestamp"], NOW);
        assert_eq!(second["metadata"]["resourceVersion"], rv2.to_string());
        assert_eq!(store.revision(), rv2);
    }

    #[test]
    fn replace_all_puts_the_given_objects_and_deletes_the_others() {
        let mut store = Store::new();
        store.put(pod("a", "p", "v1"), NOW).unwrap();
        store.put(pod("a", "q", "v1"), NOW).unwrap();
        let uid = store.get(&key("a", "p")).unwrap()["metadata"]["uid"].clone();
        let (put, deleted, refused) =
            store.replace_all(vec![pod("a", "p", "v2"), pod("b", "r", "v1"), json!({"kind": "Nope"})], NOW);
        assert_eq!((put, deleted, refused), (2, 1, 1));
        assert!(store.get(&key("a", "q")).is_none());
        let p = store.get(&key("a", "p")).unwrap();
        assert_eq!(p["metadata"]["uid"], uid, "a replaced object keeps its uid");
        assert_eq!(p["spec"]["containers"][0]["image"], "v2");
        assert!(store.get(&key("b", "r")).is_some());
    }

    #[test]
    fn put_rejects_bad_objects() {
        let mut store = Store::new();
        let cases = [
            (json!([1]), PutError::NotAnObject),
            (json!({"metadata": {"name": "x"}}), PutError::MissingKind),
            (json!({"kind": "Deployment", "metadata": {"name": "x"}}), PutError::UnknownKind("Deployment".into())),
            (json!({"kind": "Pod", "metadata": {"namespace": "a"}}), PutError::MissingName),
            (json!({"kind": "Pod", "metadata": 3}), PutError::MetadataNotAnObject),
            (
                json!({"kind": "Pod", "metadata": {"name": "x"}}),
                PutError::MissingNamespace { kind: Kind::Pod, name: "x".into() },
            ),
            (
                json!({"kind": "NetworkPolicy", "apiVersion": "v1", "metadata": {"name": "x", "namespace": "a"}}),
                PutError::WrongApiVersion {
                    kind: Kind::NetworkPolicy,
                    found: "\"v1\"".into(),
                    expected: "networking.k8s.io/v1",
                },
            ),
        ];
        for (obj, want) in cases {
            assert_eq!(store.put(obj.clone(), NOW), Err(want), "{obj}");
        }
        assert_eq!(store.revision(), FIRST_REVISION);
    }

    #[test]
    fn cluster_scoped_objects_lose_their_namespace() {
        let mut store = Store::new();
        store.put(json!({"kind": "Namespace", "metadata": {"name": "a", "namespace": "x"}}), NOW).unwrap();
        let scope = Scope { kind: Kind::Namespace, terms: Vec::new() };
        let listed = store.list(&scope, store.revision()).unwrap();
        assert_eq!(listed.len(), 1);
        assert!(listed[0]["metadata"].get("namespace").is_none());
    }

    #[test]
    fn list_at_an_older_revision_rolls_back_the_history() {
        let mut store = Store::new();
        store.put(pod("a", "p1", "v1"), NOW).unwrap();
        let at = store.put(pod("b", "p2", "v1"), NOW).unwrap();
        store.put(pod("a", "p1", "v2"), NOW).unwrap();
        store.delete(&key("b", "p2")).unwrap();
        store.put(pod("a", "p0", "v1"), NOW).unwrap();

        let now = store.list(&all_pods(), store.revision()).unwrap();
        assert_eq!(names(&now), ["p0", "p1"]);
        let then = store.list(&all_pods(), at).unwrap();
        assert_eq!(names(&then), ["p1", "p2"]);
        assert_eq!(then[0]["spec"]["containers"][0]["image"], "v1");

        let in_a = Scope {
            kind: Kind::Pod,
            terms: vec![FieldTerm { field: Field::Namespace, value: "a".into(), negated: false }],
        };
        assert_eq!(names(&store.list(&in_a, at).unwrap()), ["p1"]);
        assert_eq!(
            store.list(&all_pods(), store.revision() + 1),
            Err(ReadError::TooLarge { requested: store.revision() + 1, current: store.revision() })
        );

        store.compact();
        assert_eq!(store.list(&all_pods(), at), Err(ReadError::Expired { requested: at, compacted: store.revision() }));
        assert_eq!(names(&store.list(&all_pods(), store.revision()).unwrap()), ["p0", "p1"]);
    }

    #[test]
    fn watch_replays_then_streams_and_deleted_carries_the_deletion_revision() {
        let mut store = Store::new();
        let start = store.put(pod("a", "p1", "v1"), NOW).unwrap();
        store.put(pod("a", "p1", "v2"), NOW).unwrap();
        let mut sub = store.watch(all_pods(), WatchFrom::After(start), true).unwrap();
        let deleted_at = store.delete(&key("a", "p1")).unwrap();
        store.send_bookmarks();
        let events = drain(&mut sub);
        let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(types, ["MODIFIED", "DELETED", "BOOKMARK"]);
        assert_eq!(events[1]["object"]["metadata"]["resourceVersion"], deleted_at.to_string());
        assert_eq!(events[2]["object"]["metadata"]["resourceVersion"], deleted_at.to_string());
        assert_eq!(events[2]["object"]["kind"], "Pod");
    }

    #[test]
    fn watch_from_current_sends_synthetic_adds_and_the_initial_events_end_bookmark() {
        let mut store = Store::new();
        store.put(pod("a", "p1", "v1"), NOW).unwrap();
        store.put(pod("b", "p2", "v1"), NOW).unwrap();
        let in_b = Scope {
            kind: Kind::Pod,
            terms: vec![FieldTerm { field: Field::Namespace, value: "b".into(), negated: false }],
        };
        let mut sub = store.watch(in_b, WatchFrom::Current { initial_events_end: true }, true).unwrap();
        store.put(pod("a", "p3", "v1"), NOW).unwrap();
        store.put(pod("b", "p4", "v1"), NOW).unwrap();
        let events = drain(&mut sub);
        let summary: Vec<(String, String)> = events
            .iter()
            .map(|e| {
                (
                    e["type"].as_str().unwrap().to_owned(),
                    e["object"]["metadata"]["name"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect();
        let want = [("ADDED", "p2"), ("BOOKMARK", ""), ("ADDED", "p4")].map(|(t, n)| (t.to_owned(), n.to_owned()));
        assert_eq!(summary, want);
        assert_eq!(events[1]["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"], "true");
    }

    #[test]
    fn watch_from_a_compacted_revision_is_expired() {
        let mut store = Store::new();
        let start = store.put(pod("a", "p1", "v1"), NOW).unwrap();
        store.put(pod("a", "p2", "v1"), NOW).unwrap();
        store.compact();
        assert!(matches!(store.watch(all_pods(), WatchFrom::After(start), false), Err(ReadError::Expired { .. })));
        assert!(store.watch(all_pods(), WatchFrom::After(store.revision()), false).is_ok());
    }

    #[test]
    fn removing_the_crds_deletes_their_objects_and_ends_their_watches() {
        let mut store = Store::new();
        let anp = |name: &str| json!({"kind": "AdminNetworkPolicy", "metadata": {"name": name}, "spec": {}});
        store.put(anp("a"), NOW).unwrap();
        store.put(json!({"kind": "Node", "metadata": {"name": "n", "namespace": "x"}}), NOW).unwrap();
        let anps = Scope { kind: Kind::AdminNetworkPolicy, terms: Vec::new() };
        let mut sub = store.watch(anps.clone(), WatchFrom::After(store.revision()), true).unwrap();
        let _nodes = store.watch(Scope { kind: Kind::Node, terms: Vec::new() }, WatchFrom::After(1), false).unwrap();
        assert!(store.serves(Kind::AdminNetworkPolicy));
        store.set_crds_installed(false);
        assert!(!store.serves(Kind::AdminNetworkPolicy) && store.serves(Kind::Node));
        let events = drain(&mut sub);
        assert_eq!(events.len(), 1);
        assert_eq!(
            (events[0]["type"].as_str(), events[0]["object"]["metadata"]["name"].as_str()),
            (Some("DELETED"), Some("a"))
        );
        assert!(sub.rx.is_closed(), "the watch ends");
        assert_eq!(store.open_watches(), 1, "the node watch stays");
        assert_eq!(store.put(anp("b"), NOW), Err(PutError::NotInstalled(Kind::AdminNetworkPolicy)));
        assert_eq!(store.list(&anps, store.revision()).unwrap(), Vec::<Value>::new());
        store.set_crds_installed(true);
        store.put(anp("b"), NOW).unwrap();
    }

    #[test]
    fn calico_kinds_are_served_as_configured() {
        let mut store = Store::new();
        let tier = |api: &str| json!({"apiVersion": api, "kind": "Tier", "metadata": {"name": "t"}, "spec": {}});
        assert_eq!(store.put(tier("crd.projectcalico.org/v1"), NOW), Err(PutError::NotInstalled(Kind::CalicoTier)));
        store.set_calico(Calico::Crds);
        store.put(tier("crd.projectcalico.org/v1"), NOW).unwrap();
        assert_eq!(store.put(tier("projectcalico.org/v3"), NOW), Err(PutError::NotInstalled(Kind::CalicoV3Tier)));
        store.set_calico(Calico::ApiServer);
        store.put(tier("projectcalico.org/v3"), NOW).unwrap();
        assert!(matches!(store.put(tier("example.org/v1"), NOW), Err(PutError::WrongApiVersion { .. })));
        // The same name under another group is another object.
        assert_eq!(store.objects.len(), 2);
        let np = json!({"apiVersion": "crd.projectcalico.org/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "p", "namespace": "a"}});
        store.put(np, NOW).unwrap();
        assert!(store
            .get(&ObjectKey { kind: Kind::CalicoNetworkPolicy, namespace: "a".into(), name: "p".into() })
            .is_some());

        // One kind out: its objects are deleted.
        store.set_served(Kind::CalicoV3Tier, false);
        assert!(!store.serves(Kind::CalicoV3Tier) && store.serves(Kind::CalicoTier));
        assert_eq!(store.objects.len(), 2);
        store.set_served(Kind::CalicoV3Tier, true);
        // Calico gone: every Calico object with it.
        store.set_calico(Calico::None);
        assert!(store.objects.is_empty());
        assert!(store.serves(Kind::ServiceAccount) && !store.serves(Kind::CalicoTier));
        store.set_forbidden(Kind::Pod, true);
        assert!(store.is_forbidden(Kind::Pod) && store.serves(Kind::Pod));
    }

    #[test]
    fn abort_and_bookmarks_reach_only_the_right_watches() {
        let mut store = Store::new();
        let mut with = store.watch(all_pods(), WatchFrom::After(FIRST_REVISION), true).unwrap();
        let mut without = store.watch(all_pods(), WatchFrom::After(FIRST_REVISION), false).unwrap();
        assert_eq!(store.open_watches(), 2);
        store.send_bookmarks();
        assert_eq!(drain(&mut with).len(), 1);
        assert_eq!(drain(&mut without).len(), 0);
        drop(without);
        assert_eq!(store.open_watches(), 1);
        store.abort_watches();
        assert!(matches!(with.rx.try_recv(), Ok(WatchMsg::Abort)));
        assert_eq!(store.open_watches(), 0);
    }
}
