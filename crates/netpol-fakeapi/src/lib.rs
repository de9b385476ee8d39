//! A small in-memory Kubernetes API server for tests.
//!
//! netpol reads Namespaces, Pods, NetworkPolicies, Nodes, the admin network policy CRDs, Calico's objects (and
//! the ServiceAccounts Calico's selectors see) and Cilium's policies and CIDR groups (and the Services,
//! EndpointSlices and Endpoints Cilium's policies name) from live clusters with kube-rs's list + watch. No real
//! kube-apiserver runs on CI, so [`FakeApiServer`] speaks the real wire protocol over plain HTTP on `127.0.0.1` and
//! the real kube-rs client (and `kubectl`) talks to it: tests drive it with [`FakeApiServer::put`],
//! [`FakeApiServer::delete`], the same writes over HTTP as on a real cluster (`kubectl apply -f`, kube-rs's
//! `Api::create`/`patch`/`delete`), and the fault injectors ([`compact`](FakeApiServer::compact), [`drop_watches`](FakeApiServer::drop_watches),
//! [`send_bookmarks`](FakeApiServer::send_bookmarks), [`set_forbidden`](FakeApiServer::set_forbidden)) and check
//! what the client saw, and which requests it made ([`FakeApiServer::requests`]).
//!
//! # What it implements
//!
//! - Kinds ([`Kind`]): `v1` Namespace and Node (cluster-scoped), `v1` Pod, ServiceAccount, Service, Endpoints,
//!   `discovery.k8s.io/v1` EndpointSlice and `networking.k8s.io/v1` NetworkPolicy (namespaced); the CRD kinds of
//!   `policy.networking.k8s.io` (cluster-scoped): ClusterNetworkPolicy (`v1alpha2`), AdminNetworkPolicy and
//!   BaselineAdminNetworkPolicy (`v1alpha1`); Calico's NetworkPolicy, NetworkSet, StagedNetworkPolicy and
//!   StagedKubernetesNetworkPolicy (namespaced), GlobalNetworkPolicy, Tier, GlobalNetworkSet, StagedGlobalNetworkPolicy
//!   and HostEndpoint (cluster-scoped), under its CRDs' group `crd.projectcalico.org/v1` and under its API server's
//!   `projectcalico.org/v3`; Cilium's CiliumNetworkPolicy (namespaced) and CiliumClusterwideNetworkPolicy
//!   (cluster-scoped) under its CRDs' group `cilium.io/v2`, and its CiliumCIDRGroup (cluster-scoped) under
//!   `cilium.io/v2` and `cilium.io/v2alpha1` (stored apart, as Calico's two groups are). Two kinds may share a `kind`
//!   name (`NetworkPolicy`): their `apiVersion` tells them apart ([`Kind::from_api_version`]).
//! - Paths: every kind's collection (`/api/v1/pods`, `/apis/{group}/{version}/{plural}`), its namespaced
//!   collections (`.../namespaces/{ns}/{plural}`) and its objects (`.../{plural}/{name}`,
//!   `.../namespaces/{ns}/{plural}/{name}`), and minimal discovery: `/version`, `/api`, `/apis`, `/api/v1`,
//!   `/apis/{group}/{version}` (each resource with `namespaced`, the verbs `create`, `delete`, `get`, `list`,
//!   `patch`, `update`, `watch`, and the short names and categories of a real cluster for the built-in kinds and
//!   the `policy.networking.k8s.io` CRDs: `po`, `netpol`, `anp`, `all`, …), and a minimal OpenAPI v3 (`/openapi/v3` and one document per group version,
//!   without schemas: see below). `GET` everywhere; `POST` to a collection; `PUT`, `PATCH` and `DELETE` to an
//!   object. Any other method answers `405` (reason `MethodNotAllowed`).
//! - Writes, answered as a real kube-apiserver answers them, through the same store functions as
//!   [`FakeApiServer::put`] and [`FakeApiServer::delete`], so every write bumps the revision, sets
//!   `metadata.resourceVersion`, keeps `uid` and `creationTimestamp`, and sends its `ADDED`, `MODIFIED` or
//!   `DELETED` event to the watches:
//!   - `POST` (create): `201` with the stored object. The body (JSON, or YAML with `Content-Type:
//!     application/yaml`) may leave out `apiVersion`, `kind` and a namespaced object's namespace: the path's are
//!     taken. `409` `AlreadyExists` when the object exists; `400` `BadRequest` for a body of another kind or
//!     `apiVersion`, another namespace than the path's, or one that is not a JSON object; `422` `Invalid` without
//!     `metadata.name` (`metadata.generateName` makes one: the prefix and five characters).
//!   - `PUT` (replace): `200` with the stored object; `404` `NotFound` when it does not exist (no create on
//!     update); `409` `Conflict` when the body's `metadata.resourceVersion` (or `uid`) is not the stored one's (an
//!     update without a `resourceVersion` is unconditional, for every kind); `400` when the body's name is not the
//!     path's.
//!   - `PATCH`, by `Content-Type`: `application/merge-patch+json` (RFC 7386); `application/json-patch+json`
//!     (RFC 6902: `add`, `remove`, `replace`, `move`, `copy`, `test`, all or nothing; a failing operation answers
//!     `422` `Invalid`); `application/strategic-merge-patch+json`, for built-in kinds only (custom kinds answer
//!     `415`, as for a CRD): a merge patch with Kubernetes' list semantics for the lists this server knows by
//!     field name — `containers`, `initContainers`, `ephemeralContainers`, `volumes`, `env`, `imagePullSecrets`
//!     merged by `name`, `volumeMounts` by `mountPath`, `conditions` by `type`, `ownerReferences` by `uid`, a
//!     container's `ports` by `containerPort`, a Service's `spec.ports` by `port` — every other list replaced,
//!     with kubectl's directives `$patch: delete|replace` and `$deleteFromPrimitiveList/…` (`$setElementOrder/…`
//!     and `$retainKeys` are ignored); `application/apply-patch+yaml` (server-side apply, `fieldManager`
//!     required, else `422`) as create-or-merge: the object is created (`201`) if it does not exist, else the
//!     applied configuration is merged as a strategic merge patch (a merge patch for custom kinds), without field
//!     ownership: fields a manager stops applying stay, and there are no apply conflicts. A `resourceVersion` or
//!     `uid` in the patched object is a precondition (`409` `Conflict`); a patch that changes the name, namespace
//!     or kind answers `400`; another `Content-Type` answers `415` `UnsupportedMediaType`.
//!   - `DELETE`: `200` with the object's last state (its `resourceVersion` the deletion's revision), `404` when
//!     it does not exist; the body's `DeleteOptions` `preconditions` (`resourceVersion`, `uid`) are checked
//!     (`409`), `propagationPolicy` and `gracePeriodSeconds` are ignored: deletion is immediate.
//!   - `dryRun=All` (or `DeleteOptions.dryRun: [All]`) answers as the write would, and stores nothing (the
//!     answer keeps the stored object's `resourceVersion`, or has none for a create, as a real apiserver's dry
//!     runs do); other `dryRun` values answer `400`.
//! - kubectl: `kubectl apply -f` (client-side, `--server-side` and `--dry-run=server`), `create -f`,
//!   `replace -f`, `label`, `annotate`, `patch` (strategic, `--type=merge`, `--type=json`), `get` and `delete`
//!   (`-f`, by name, `--all`) work with a kubeconfig from [`FakeApiServer::write_kubeconfig`] (tested with
//!   Debian's kubectl 1.32). kubectl reads `/openapi/v3` to decide whether the server validates fields: the
//!   minimal documents say it does (each kind's `PATCH` takes `fieldValidation`), so kubectl skips client-side
//!   validation (which would need full schemas and fails on a `404`); the server then ignores `fieldValidation`
//!   and accepts unknown fields. Without schemas, kubectl's client-side apply computes strategic merge patches
//!   from its built-in types and JSON merge patches for custom kinds, as it does on a real cluster.
//! - CRDs and API services: the `policy.networking.k8s.io` CRDs are installed by default,
//!   [`FakeApiServer::set_crds_installed`]`(false)` removes them; Calico is not installed by default,
//!   [`FakeApiServer::set_calico`] installs its CRDs, or its CRDs and its API server; nor is Cilium,
//!   [`FakeApiServer::set_cilium`] installs its CRDs; [`FakeApiServer::set_served`]
//!   takes one kind out. A kind taken out loses its objects, its watches end, and its paths (and discovery
//!   entries) are gone, so a list answers `404` with the `Status` a real apiserver sends for a resource it does not
//!   serve (reason `NotFound`, "the server could not find the requested resource").
//! - Authorisation faults: [`FakeApiServer::set_forbidden`] makes every request for a kind answer `403` with the
//!   `Status` a real apiserver sends (reason `Forbidden`); discovery still lists the kind, as RBAC does not hide it.
//! - Revisions: one global counter, starting at 1 and bumped by every change. Each object's
//!   `metadata.resourceVersion` is the revision of its last change; the server also sets `uid` and
//!   `creationTimestamp` (kept when an object is replaced).
//! - List: `{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"N"},"items":[..]}`, items without
//!   `kind`/`apiVersion` as a real apiserver sends them, ordered by namespace then name. `limit` + `continue`
//!   paginate over a consistent snapshot: the token holds the snapshot's revision and the position, and the
//!   snapshot is rebuilt from the history, so once [`FakeApiServer::compact`] has forgotten that revision the
//!   token gets `410 Gone` with reason `Expired`. `resourceVersion` (unset: most recent; `0`: any, served as most
//!   recent; `N`) and `resourceVersionMatch` (`Exact`, `NotOlderThan`) follow the apiserver's rules; a revision
//!   newer than the server's gets `504` with reason `Timeout` and cause `ResourceVersionTooLarge`.
//! - Watch (`watch=true`, or any Go boolean): newline-delimited `{"type":..,"object":..}` events in a chunked
//!   response. From `resourceVersion=N`, every change after N is replayed from the history, then live changes
//!   follow; from an unset or `0` revision, synthetic `ADDED` events for the current state come first. A start
//!   revision older than the compaction point gets a `200` response whose only event is an `ERROR` with a
//!   `Status` of code 410, reason `Expired`, as a real apiserver sends it. `DELETED` carries the object's last
//!   state with the deletion's revision. `BOOKMARK`s are sent only on request
//!   ([`FakeApiServer::send_bookmarks`]) to watches with `allowWatchBookmarks=true`. `sendInitialEvents=true`
//!   (streaming lists, with `resourceVersionMatch=NotOlderThan`) sends the current state then a bookmark
//!   annotated `k8s.io/initial-events-end`. The stream ends cleanly at `timeoutSeconds`.
//! - Field selectors on `metadata.name` and `metadata.namespace` (`=`, `==`, `!=`).
//! - Errors are `Status` objects: `{"kind":"Status","apiVersion":"v1","status":"Failure","message":..,
//!   "reason":..,"code":..}`.
//!
//! # What it ignores or refuses
//!
//! - There is no validation of object bodies beyond kind, `apiVersion`, name and namespace (a write over HTTP is
//!   no more checked than a [`FakeApiServer::put`]), no defaulting, no admission (a Pod may live in a Namespace
//!   that does not exist) and no garbage collection (deleting a Namespace leaves its Pods). Every write is a
//!   change, even an identical one, and `metadata.generation`, `managedFields`, finalizers and graceful deletion
//!   do not exist. Subresources (`status`, `scale`, …), `deletecollection` (`DELETE` of a collection) and
//!   watching one object by URL are refused. Protobuf bodies are refused with `415`: kubectl's generators that
//!   send them (`kubectl create namespace x`, `kubectl run`) fail; `kubectl create -f` sends JSON.
//! - `labelSelector` is refused with `400` rather than silently ignored, and so are other field selectors.
//! - Authentication, authorisation (beyond [`FakeApiServer::set_forbidden`], which refuses writes too, with their
//!   verb), TLS, HTTP/2, protobuf, table output (kubectl falls back to its own columns), `pretty`, aggregated
//!   discovery, OpenAPI v2 and schemas, and periodic bookmarks. Watching one object by URL
//!   (`.../pods/{name}?watch=true`) is refused.
//!
//! # Example
//!
//! ```
//! # fn main() -> std::io::Result<()> {
//! let server = netpol_fakeapi::FakeApiServer::start()?;
//! let rv = server.put(serde_json::json!({
//!     "apiVersion": "v1",
//!     "kind": "Namespace",
//!     "metadata": {"name": "prod", "labels": {"team": "a"}},
//! }));
//! assert_eq!(rv, server.resource_version());
//! // Point kube-rs at it: `server.write_kubeconfig(path)`, `Kubeconfig::read_from(path)`, then
//! // `Config::from_custom_kubeconfig`.
//! assert_eq!(server.kubeconfig()["clusters"][0]["cluster"]["server"], server.url());
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]

pub mod fixtures;
mod http;
mod kind;
mod patch;
mod store;
mod time;
mod write;

use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use serde_json::{json, Value};
use tokio::sync::oneshot;

use crate::http::{lock, Shared};
use crate::store::{ObjectKey, Store};

pub use crate::kind::{Api, Kind};
pub use crate::store::{Calico, PutError};

/// One request the server received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestLog {
    /// `GET`, …
    pub method: String,
    /// The path, e.g. `/api/v1/pods`.
    pub path: String,
    /// The raw query string without `?`, empty if there was none, e.g. `limit=500`.
    pub query: String,
}

impl RequestLog {
    /// Whether the query string has a `name=value` pair (compared raw, without percent-decoding).
    pub fn has_param(&self, name: &str, value: &str) -> bool {
        self.query.split('&').any(|pair| pair.split_once('=').is_some_and(|(n, v)| n == name && v == value))
    }

    /// Whether this is a watch request (`watch=true` or `watch=1`).
    pub fn is_watch(&self) -> bool {
        self.has_param("watch", "true") || self.has_param("watch", "1")
    }
}

/// A fake Kubernetes API server on `127.0.0.1`, serving from a background thread with its own tokio
/// runtime, so it works from sync and async tests alike. Dropping it closes every watch and stops it.
pub struct FakeApiServer {
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl FakeApiServer {
    /// Binds `127.0.0.1:0` and serves on a background thread with its own tokio runtime (usable from sync and
    /// async tests).
    pub fn start() -> io::Result<FakeApiServer> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let listener = {
            let _context = runtime.enter();
            tokio::net::TcpListener::from_std(listener)?
        };
        let shared = Arc::new(Shared { store: Mutex::new(Store::new()), requests: Mutex::new(Vec::new()), addr });
        let app = http::router(Arc::clone(&shared));
        let (shutdown, stop) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new().name(format!("netpol-fakeapi-{}", addr.port())).spawn(move || {
            runtime.block_on(async move {
                let serve = std::pin::pin!(std::future::IntoFuture::into_future(axum::serve(listener, app)));
                match futures_util::future::select(serve, stop).await {
                    futures_util::future::Either::Left((Err(e), _)) => {
                        tracing::error!(error = %e, "fake API server stopped");
                    }
                    futures_util::future::Either::Left((Ok(()), _)) | futures_util::future::Either::Right(_) => {}
                }
            });
            // Dropping the runtime here cancels every connection task, open watches included.
            drop(runtime);
        })?;
        Ok(FakeApiServer { shared, shutdown: Some(shutdown), thread: Some(thread) })
    }

    /// The base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.shared.addr)
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// The kubeconfig [`write_kubeconfig`](Self::write_kubeconfig) writes: one cluster at [`url`](Self::url),
    /// one user without credentials, one context joining them (default namespace `default`), made current.
    pub fn kubeconfig(&self) -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{ "name": "netpol-fakeapi", "cluster": { "server": self.url() } }],
            "users": [{ "name": "netpol-fakeapi", "user": {} }],
            "contexts": [{
                "name": "netpol-fakeapi",
                "context": { "cluster": "netpol-fakeapi", "user": "netpol-fakeapi", "namespace": "default" },
            }],
            "current-context": "netpol-fakeapi",
            "preferences": {},
        })
    }

    /// Writes [`kubeconfig`](Self::kubeconfig) to `path`, in JSON (which every YAML reader accepts).
    pub fn write_kubeconfig(&self, path: &Path) -> io::Result<()> {
        let mut text = self.kubeconfig().to_string();
        text.push('\n');
        std::fs::write(path, text)
    }

    /// Creates or replaces the object (kind from the JSON's `apiVersion` and `kind`: one of [`Kind`]'s; namespaced
    /// kinds need `metadata.namespace`); emits ADDED or MODIFIED; returns the new resourceVersion.
    ///
    /// An object that [`try_put`](Self::try_put) refuses is logged at error level and ignored, and `put`
    /// returns 0, which no change ever has; tests that build objects at run time should prefer `try_put`.
    pub fn put(&self, obj: Value) -> u64 {
        match self.try_put(obj) {
            Ok(revision) => revision,
            Err(error) => {
                tracing::error!(%error, "FakeApiServer::put ignored an object");
                0
            }
        }
    }

    /// Like [`put`](Self::put), but says why an object is refused. `apiVersion` may be left out (then the kind is
    /// the first of that name, [`Kind::from_kind_name`]); the server sets `metadata.resourceVersion`, `uid` and
    /// `creationTimestamp`, replacing any given.
    pub fn try_put(&self, obj: Value) -> Result<u64, PutError> {
        let now = time::now_rfc3339();
        lock(&self.shared.store).put(obj, &now)
    }

    /// Deletes; emits DELETED with the last state of the object; None if it did not exist.
    ///
    /// `kind` is the `kind` field (`Pod`; a name several kinds share is the first of them,
    /// [`Kind::from_kind_name`]: see [`delete_kind`](Self::delete_kind)); an unknown kind, or a namespaced kind
    /// without a namespace, is an object that does not exist. `namespace` is ignored for cluster-scoped kinds.
    pub fn delete(&self, kind: &str, namespace: Option<&str>, name: &str) -> Option<u64> {
        self.delete_kind(Kind::from_kind_name(kind)?, namespace, name)
    }

    /// [`delete`](Self::delete) of an object of `kind`.
    pub fn delete_kind(&self, kind: Kind, namespace: Option<&str>, name: &str) -> Option<u64> {
        let namespace = if kind.is_namespaced() { namespace?.to_owned() } else { String::new() };
        lock(&self.shared.store).delete(&ObjectKey { kind, namespace, name: name.to_owned() })
    }

    /// The stored object, as a get would return it; `namespace` is ignored for cluster-scoped kinds. `kind` as
    /// for [`delete`](Self::delete).
    pub fn get(&self, kind: &str, namespace: Option<&str>, name: &str) -> Option<Value> {
        self.get_kind(Kind::from_kind_name(kind)?, namespace, name)
    }

    /// [`get`](Self::get) of an object of `kind`.
    pub fn get_kind(&self, kind: Kind, namespace: Option<&str>, name: &str) -> Option<Value> {
        let namespace = if kind.is_namespaced() { namespace?.to_owned() } else { String::new() };
        lock(&self.shared.store).get(&ObjectKey { kind, namespace, name: name.to_owned() }).cloned()
    }

    /// The current global revision (1 for a new server).
    pub fn resource_version(&self) -> u64 {
        lock(&self.shared.store).revision()
    }

    /// Installs (the default) or removes the CustomResourceDefinitions of the `policy.networking.k8s.io` kinds
    /// ([`Api::PolicyCrd`]), as a cluster without them is. Removing them deletes their objects (DELETED events, as
    /// the CRD's finalizer does), ends open watches on them, and from then on their paths answer `404`
    /// (`NotFound`, as a real apiserver answers for a resource it does not serve) and `put` refuses their objects
    /// ([`PutError::NotInstalled`]).
    pub fn set_crds_installed(&self, installed: bool) {
        lock(&self.shared.store).set_crds_installed(installed);
    }

    /// Which of Calico's APIs are served: none (the default), its CRDs (`crd.projectcalico.org/v1`,
    /// [`Api::CalicoCrd`]), or its CRDs and its API server (`projectcalico.org/v3`, [`Api::CalicoApiServer`]).
    /// Kinds no longer served lose their objects and watches, as with
    /// [`set_crds_installed`](Self::set_crds_installed).
    pub fn set_calico(&self, calico: Calico) {
        lock(&self.shared.store).set_calico(calico);
    }

    /// Installs or removes Cilium's CustomResourceDefinitions (`cilium.io/v2` CiliumNetworkPolicy,
    /// CiliumClusterwideNetworkPolicy and CiliumCIDRGroup, and `cilium.io/v2alpha1` CiliumCIDRGroup: both versions,
    /// as Cilium 1.18 serves them; [`Api::CiliumCrd`]); not installed by default. An older Cilium is
    /// `set_served(Kind::CiliumCidrGroup, false)`, a Cilium without the CIDR group CRD both versions taken out.
    /// Removing them deletes their objects and ends their watches, as with
    /// [`set_crds_installed`](Self::set_crds_installed).
    pub fn set_cilium(&self, installed: bool) {
        lock(&self.shared.store).set_cilium(installed);
    }

    /// Installs or removes Antrea's CustomResourceDefinitions (`crd.antrea.io/v1beta1` Tier, ClusterGroup, Group,
    /// ClusterNetworkPolicy and NetworkPolicy; [`Api::AntreaCrd`]); not installed by default. Removing them deletes
    /// their objects and ends their watches, as with [`set_crds_installed`](Self::set_crds_installed).
    pub fn set_antrea(&self, installed: bool) {
        lock(&self.shared.store).set_antrea(installed);
    }

    /// Takes one kind out (`false`: its CRD or API resource is not installed, whatever else is) or puts it back.
    /// Taking it out deletes its objects and ends its watches, as [`set_crds_installed`](Self::set_crds_installed)
    /// does. A built-in kind taken out is what no real apiserver does; tests should not.
    pub fn set_served(&self, kind: Kind, served: bool) {
        lock(&self.shared.store).set_served(kind, served);
    }

    /// Answers every request for `kind` (list, watch, get) with `403 Forbidden`, as a real apiserver answers a
    /// client whose RBAC does not grant it (or stops doing so). Discovery still lists the kind.
    pub fn set_forbidden(&self, kind: Kind, forbidden: bool) {
        lock(&self.shared.store).set_forbidden(kind, forbidden);
    }

    /// The kinds served now: every built-in kind, and the CRD and API service kinds while they are installed
    /// ([`set_crds_installed`](Self::set_crds_installed), [`set_calico`](Self::set_calico),
    /// [`set_served`](Self::set_served)).
    pub fn served_kinds(&self) -> Vec<Kind> {
        let store = lock(&self.shared.store);
        Kind::ALL.into_iter().filter(|k| store.serves(*k)).collect()
    }

    /// Makes the server hold exactly `objs`, as a client applying them and deleting everything else would: each
    /// object is put (ADDED or MODIFIED, even when unchanged), every other object deleted (DELETED). Returns how
    /// many were put, deleted, and refused (as [`try_put`](Self::try_put) refuses them).
    pub fn replace_all(&self, objs: Vec<Value>) -> (usize, usize, usize) {
        let now = time::now_rfc3339();
        lock(&self.shared.store).replace_all(objs, &now)
    }

    /// Forgets the event history: watches and continue tokens from older resourceVersions now get 410 Gone.
    ///
    /// Open watches are not affected: they already have every event up to now.
    pub fn compact(&self) {
        lock(&self.shared.store).compact();
    }

    /// Abruptly closes every open watch stream (connection dropped mid-stream, no final event).
    ///
    /// Events already sent to a watch are flushed before its connection drops (best effort: the server waits
    /// 20 ms). kube-rs reads the cut-short chunked body as the end of the watch and watches again from the
    /// last revision it saw.
    pub fn drop_watches(&self) {
        lock(&self.shared.store).abort_watches();
    }

    /// Sends a BOOKMARK with the current resourceVersion to every open watch that asked for bookmarks.
    pub fn send_bookmarks(&self) {
        lock(&self.shared.store).send_bookmarks();
    }

    /// Requests received so far (method, path, query string), for assertions like "a relist happened".
    pub fn requests(&self) -> Vec<RequestLog> {
        lock(&self.shared.requests).clone()
    }

    /// Forgets the requests received so far.
    pub fn clear_requests(&self) {
        lock(&self.shared.requests).clear();
    }

    /// Watch streams currently open.
    ///
    /// A watch counts from the moment its request is accepted until its stream ends, is dropped by
    /// [`drop_watches`](Self::drop_watches), or the server notices that the client went away (which it may
    /// only do when it next writes to that watch).
    pub fn open_watches(&self) -> usize {
        lock(&self.shared.store).open_watches()
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.drop_watches();
        if let Some(shutdown) = self.shutdown.take() {
            // The server thread may already have stopped on an error; then there is nobody to tell.
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the fake API server thread panicked");
            }
        }
    }
}

impl std::fmt::Debug for FakeApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeApiServer").field("url", &self.url()).finish_non_exhaustive()
    }
}
