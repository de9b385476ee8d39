//! The fake API server driven by kube-rs's real client and watcher, over real HTTP on 127.0.0.1.
//!
//! Every test runs under [`within`], so a hang fails the test instead of blocking CI.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher;
use kube::{Client, Config, ResourceExt};
use netpol_fakeapi::fixtures::{anp_deny_frontend, banp_default, cnp_accept_web, worker_node};
use netpol_fakeapi::{FakeApiServer, Kind, PutError, RequestLog};
use serde_json::{json, Value};

const TEST_TIMEOUT: Duration = Duration::from_secs(30);
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs a test body with a deadline.
async fn within<F: Future>(body: F) -> F::Output {
    tokio::time::timeout(TEST_TIMEOUT, body).await.expect("the test timed out")
}

/// A kube-rs client built the way netpol builds one: from a kubeconfig file.
async fn client(server: &FakeApiServer) -> Client {
    // In the target directory (`CARGO_TARGET_TMPDIR`), never the system's temporary directory.
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "netpol-fakeapi-test-{}-{}.kubeconfig",
        std::process::id(),
        server.addr().port()
    ));
    server.write_kubeconfig(&path).unwrap();
    let kubeconfig = Kubeconfig::read_from(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.unwrap();
    // kube-rs takes HTTPS_PROXY from the environment even for a plain-http cluster; loopback needs no proxy.
    config.proxy_url = None;
    Client::try_from(config).unwrap()
}

fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

fn pod(ns: &str, name: &str, version: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"namespace": ns, "name": name, "labels": {"app": name, "version": version}},
        "spec": {"containers": [{"name": "main", "image": format!("registry.example/{name}:{version}")}]},
    })
}

fn network_policy(ns: &str, name: &str) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"namespace": ns, "name": name},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
    })
}

/// The list (not watch) requests made to `path`.
fn lists(server: &FakeApiServer, path: &str) -> Vec<RequestLog> {
    server.requests().into_iter().filter(|r| r.path == path && !r.is_watch()).collect()
}

/// The watch requests made to `path`.
fn watches(server: &FakeApiServer, path: &str) -> Vec<RequestLog> {
    server.requests().into_iter().filter(|r| r.path == path && r.is_watch()).collect()
}

fn param<'a>(request: &'a RequestLog, name: &str) -> Option<&'a str> {
    request.query.split('&').find_map(|pair| pair.split_once('=').filter(|(n, _)| *n == name).map(|(_, v)| v))
}

fn key(pod: &Pod) -> String {
    format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any())
}

type EventStream = Pin<Box<dyn Stream<Item = Result<watcher::Event<Pod>, watcher::Error>> + Send>>;

/// What a consumer of `kube::runtime::watcher` would hold: the objects, rebuilt from the watcher's events.
///
/// The watcher is polled only inside this type's methods, so between calls it is paused: changes made then
/// reach it only when a method polls it again, which lets a test change the server "while disconnected".
struct Mirror {
    stream: EventStream,
    objects: BTreeMap<String, Pod>,
    /// Objects of a (re)list in progress, swapped in at `InitDone`.
    relist: Option<BTreeMap<String, Pod>>,
    /// How many (re)lists completed.
    lists_done: usize,
    /// `Apply`/`Delete` events seen after the lists, as `apply ns/name` or `delete ns/name`.
    changes: Vec<String>,
    errors: Vec<watcher::Error>,
}

impl Mirror {
    fn new(api: Api<Pod>, config: watcher::Config) -> Mirror {
        Mirror {
            stream: watcher(api, config).boxed(),
            objects: BTreeMap::new(),
            relist: None,
            lists_done: 0,
            changes: Vec::new(),
            errors: Vec::new(),
        }
    }

    fn handle(&mut self, item: Result<watcher::Event<Pod>, watcher::Error>) {
        match item {
            Ok(watcher::Event::Init) => self.relist = Some(BTreeMap::new()),
            Ok(watcher::Event::InitApply(pod)) => {
                self.relist.as_mut().expect("InitApply outside of a list").insert(key(&pod), pod);
            }
            Ok(watcher::Event::InitDone) => {
                self.objects = self.relist.take().expect("InitDone outside of a list");
                self.lists_done += 1;
            }
            Ok(watcher::Event::Apply(pod)) => {
                self.changes.push(format!("apply {}", key(&pod)));
                self.objects.insert(key(&pod), pod);
            }
            Ok(watcher::Event::Delete(pod)) => {
                self.changes.push(format!("delete {}", key(&pod)));
                self.objects.remove(&key(&pod));
            }
            Err(error) => self.errors.push(error),
        }
    }

    /// Polls the watcher for at most `wait`; false if it had nothing to say in that time.
    async fn poll(&mut self, wait: Duration) -> bool {
        match tokio::time::timeout(wait, self.stream.next()).await {
            Ok(Some(item)) => {
                self.handle(item);
                true
            }
            Ok(None) => panic!("the watcher stream ended"),
            Err(_) => false,
        }
    }

    /// Polls the watcher until `done` holds.
    async fn until(&mut self, what: &str, done: impl Fn(&Mirror) -> bool) {
        let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
        while !done(self) {
            assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
            self.poll(Duration::from_millis(100)).await;
        }
    }

    /// Polls the watcher until the server has `count` watches open.
    async fn until_watching(&mut self, server: &FakeApiServer, count: usize) {
        let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
        while server.open_watches() < count {
            assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {count} open watches");
            self.poll(Duration::from_millis(20)).await;
        }
    }

    fn names(&self) -> Vec<&str> {
        self.objects.keys().map(String::as_str).collect()
    }

    fn version_label(&self, key: &str) -> Option<&str> {
        self.objects.get(key)?.labels().get("version").map(String::as_str)
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Lists and gets

#[tokio::test]
async fn list_paginates_over_a_consistent_snapshot() {
    within(async {
        let server = FakeApiServer::start().unwrap();
        for i in 0..7 {
            let ns = if i % 2 == 0 { "a" } else { "b" };
            server.put(pod(ns, &format!("p{i}"), "v1"));
        }
        let snapshot = server.resource_version();
        let pods: Api<Pod> = Api::all(client(&server).await);

        let first = pods.list(&ListParams::default().limit(3)).await.unwrap();
        assert_eq!(first.items.len(), 3);
        assert_eq!(first.metadata.resource_version.as_deref(), Some(snapshot.to_string().as_str()));
        assert_eq!(first.metadata.remaining_item_count, Some(4));
        // Items come in key order, namespace then name, with the server-owned metadata.
        let names: Vec<String> = first.items.iter().map(key).collect();
        assert_eq!(names, ["a/p0", "a/p2", "a/p4"]);
        let meta = &first.items[0].metadata;
        assert!(meta.uid.is_some() && meta.creation_timestamp.is_some() && meta.resource_version.is_some());

        // Changes after the first page do not show in the later ones: they continue the same snapshot.
        server.put(pod("a", "p3", "v1"));
        server.delete("Pod", Some("b"), "p5").unwrap();
        let mut all = names;
        let mut token = first.metadata.continue_;
        while let Some(t) = token {
            let page = pods.list(&ListParams::default().limit(3).continue_token(&t)).await.unwrap();
            assert_eq!(page.metadata.resource_version.as_deref(), Some(snapshot.to_string().as_str()));
            all.extend(page.items.iter().map(key));
            token = page.metadata.continue_;
        }
        assert_eq!(all, ["a/p0", "a/p2", "a/p4", "a/p6", "b/p1", "b/p3", "b/p5"]);

        // A fresh list sees the changes; a namespaced list sees its namespace only.
        let now: Vec<String> = pods.list(&ListParams::default()).await.unwrap().items.iter().map(key).collect();
        assert_eq!(now, ["a/p0", "a/p2", "a/p3", "a/p4", "a/p6", "b/p1", "b/p3"]);
        let in_b: Api<Pod> = Api::namespaced(client(&server).await, "b");
        let in_b: Vec<String> = in_b.list(&ListParams::default()).await.unwrap().items.iter().map(key).collect();
        assert_eq!(in_b, ["b/p1", "b/p3"]);

        let list = lists(&server, "/api/v1/pods");
        let continued: Vec<bool> = list.iter().map(|r| param(r, "continue").is_some()).collect();
        assert_eq!(continued, [false, true, true, false]);
    })
    .await;
}

#[tokio::test]
async fn an_expired_continue_token_gets_410() {
    within(async {
        let server = FakeApiServer::start().unwrap();
        for i in 0..4 {
            server.put(network_policy("a", &format!("np{i}")));
        }
        let policies: Api<NetworkPolicy> = Api::namespaced(client(&server).await, "a");
        let first = policies.list(&ListParams::default().limit(2)).await.unwrap();
        let token = first.metadata.continue_.unwrap();
        server.put(network_policy("a", "np9"));
        server.compact();
        let error = policies.list(&ListParams::default().limit(2).continue_token(&token)).await.unwrap_err();
        let kube::Error::Api(status) = error else { panic!("not an API error: {error:?}") };
        assert_eq!((status.code, status.reason.as_str()), (410, "Expired"));
        // A new list works, at the new revision.
        let fresh = policies.list(&ListParams::default()).await.unwrap();
        assert_eq!(fresh.items.len(), 5);
        assert_eq!(fresh.metadata.resource_version, Some(server.resource_version().to_string()));
    })
    .await;
}

#[tokio::test]
async fn get_returns_the_object_or_a_404_status() {
    within(async {
        let server = FakeApiServer::start().unwrap();
        server.put(namespace("prod"));
        server.put(pod("prod", "web", "v1"));
        server.put(network_policy("prod", "deny"));
        let client = client(&server).await;

        let ns = Api::<Namespace>::all(client.clone()).get("prod").await.unwrap();
        assert_eq!(ns.name_any(), "prod");
        let web = Api::<Pod>::namespaced(client.clone(), "prod").get("web").await.unwrap();
        assert_eq!(web.labels()["version"], "v1");
        assert_eq!(web.spec.unwrap().containers[0].image.as_deref(), Some("registry.example/web:v1"));
        let deny = Api::<NetworkPolicy>::namespaced(client.clone(), "prod").get("deny").await.unwrap();
        assert_eq!(deny.spec.unwrap().policy_types, Some(vec!["Ingress".to_owned()]));

        let error = Api::<Pod>::namespaced(client.clone(), "prod").get("nope").await.unwrap_err();
        let kube::Error::Api(status) = error else { panic!("not an API error: {error:?}") };
        assert_eq!((status.code, status.reason.as_str()), (404, "NotFound"));
        assert_eq!(Api::<Pod>::namespaced(client.clone(), "prod").get_opt("nope").await.unwrap(), None);
        // Discovery answers too.
        assert_eq!(client.apiserver_version().await.unwrap().minor, "37");
    })
    .await;
}

#[tokio::test]
async fn label_selectors_are_refused_with_a_status() {
    within(async {
        let server = FakeApiServer::start().unwrap();
        let pods: Api<Pod> = Api::namespaced(client(&server).await, "a");
        let error = pods.list(&ListParams::default().labels("app=web")).await.unwrap_err();
        let kube::Error::Api(status) = error else { panic!("not an API error: {error:?}") };
        assert_eq!((status.code, status.reason.as_str()), (400, "BadRequest"));
        // Field selectors on name and namespace work.
        server.put(pod("a", "web", "v1"));
        server.put(pod("a", "db", "v1"));
        let named = pods.list(&ListParams::default().fields("metadata.name=db")).await.unwrap();
        assert_eq!(named.items.iter().map(key).collect::<Vec<_>>(), ["a/db"]);
    })
    .await;
}

// ---------------------------------------------------------------------------------------------------------------
// Nodes and the policy CRDs

/// kube's dynamic API for a kind of the fake server.
fn dynamic(client: &Client, kind: Kind) -> Api<DynamicObject> {
    Api::all_with(client.clone(), &api_resource(kind))
}

/// A kind of the fake server as kube's dynamic API describes it.
fn api_resource(kind: Kind) -> ApiResource {
    let (group, version) = match kind.api_version().split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", kind.api_version()),
    };
    ApiResource {
        group: group.to_owned(),
        version: version.to_owned(),
        api_version: kind.api_version().to_owned(),
        kind: kind.name().to_owned(),
        plural: kind.plural().to_owned(),
    }
}

fn the_crds() -> [Kind; 3] {
    [Kind::ClusterNetworkPolicy, Kind::AdminNetworkPolicy, Kind::BaselineAdminNetworkPolicy]
}

#[tokio::test]
async fn nodes_and_the_policy_crds_are_listed_watched_and_got_at_their_paths() {
    within(async {
        let server = FakeApiServer::start().unwrap();
        for obj in [anp_deny_frontend(), banp_default(), cnp_accept_web(), worker_node()] {
            server.try_put(obj).unwrap();
        }
        let client = client(&server).await;

        let nodes = Api::<Node>::all(client.clone()).list(&ListParams::default()).await.unwrap();
        assert_eq!(nodes.items.len(), 1);
        let addresses = nodes.items[0].status.as_ref().unwrap().addresses.clone().unwrap();
        assert_eq!(addresses[1].address, "192.168.1.11");
        assert_eq!(
            Api::<Node>::all(client.clone()).get("worker-1").await.unwrap().labels()["kubernetes.io/os"],
            "linux"
        );

        let expect = [
            (Kind::ClusterNetworkPolicy, "accept-web"),
            (Kind::AdminNetworkPolicy, "deny-frontend"),
            (Kind::BaselineAdminNetworkPolicy, "default"),
        ];
        for (kind, name) in expect {
            let api = dynamic(&client, kind);
            let list = api.list(&ListParams::default().limit(10)).await.unwrap();
            assert_eq!(list.items.iter().map(ResourceExt::name_any).collect::<Vec<_>>(), [name], "{kind}");
            // Cluster-scoped, and without kind and apiVersion on the items, as a real apiserver lists them.
            let item = &list.items[0];
            assert_eq!(item.metadata.namespace, None);
            assert!(item.types.is_none(), "{item:?}");
            assert!(item.data["spec"]["subject"].is_object());
            let got = api.get(name).await.unwrap();
            assert_eq!(got.types.unwrap().api_version, kind.api_version());
            assert_eq!(lists(&server, &kind.path()).len(), 1);
        }
        let requests = server.requests();
        let paths: Vec<&str> = requests.iter().map(|r| r.path.as_str()).collect();
        for path in [
            "/api/v1/nodes",
            "/apis/policy.networking.k8s.io/v1alpha2/clusternetworkpolicies",
            "/apis/policy.networking.k8s.io/v1alpha1/adminnetworkpolicies/deny-frontend",
            "/apis/policy.networking.k8s.io/v1alpha1/baselineadminnetworkpolicies",
        ] {
            assert!(paths.contains(&path), "{path} in {paths:?}");
        }

        // A watch of one CRD kind sees only its own changes.
        let anps = dynamic(&client, Kind::AdminNetworkPolicy);
        let start = server.resource_version().to_string();
        let mut stream = anps.watch(&WatchParams::default(), &start).await.unwrap().boxed();
        server.delete("BaselineAdminNetworkPolicy", None, "default").unwrap();
        let mut renamed = anp_deny_frontend();
        renamed["metadata"]["name"] = json!("deny-frontend-2");
        server.try_put(renamed).unwrap();
        let gone = server.delete("AdminNetworkPolicy", None, "deny-frontend").unwrap();
        let Some(Ok(WatchEvent::Added(added))) = stream.next().await else { panic!("expected ADDED") };
        assert_eq!(added.name_any(), "deny-frontend-2");
        assert_eq!(added.types.unwrap().kind, "AdminNetworkPolicy");
        let Some(Ok(WatchEvent::Deleted(deleted))) = stream.next().await else { panic!("expected DELETED") };
        assert_eq!(deleted.resource_version(), Some(gone.to_string()));

        // Discovery lists the group's two versions, the newest preferred.
        let groups = client.list_api_groups().await.unwrap();
        let policy = groups.groups.iter().find(|g| g.name == "policy.networking.k8s.io").unwrap();
        let versions: Vec<&str> = policy.versions.iter().map(|v| v.version.as_str()).collect();
        assert_eq!(versions, ["v1alpha2", "v1alpha1"]);
        let v1alpha1 = client.list_api_group_resources("policy.networking.k8s.io/v1alpha1").await.unwrap();
        assert!(v1alpha1.resources.iter().all(|r| !r.namespaced));
        let core = client.list_core_api_resources("v1").await.unwrap();
        assert!(core.resources.iter().any(|r| r.name == "nodes" && !r.namespaced));
    })
    .await;
}

#[tokio::test]
async fn crds_not_installed_answer_404_with_a_status() {
    within(async {
        let server = FakeApiServer::start().unwrap();
        server.try_put(anp_deny_frontend()).unwrap();
        let client = client(&server).await;
        let anps = dynamic(&client, Kind::AdminNetworkPolicy);
        let start = server.resource_version().to_string();
        let mut open = anps.watch(&WatchParams::default(), &start).await.unwrap().boxed();

        server.set_crds_installed(false);
        // The CRD's finalizer deleted the object; then the watch ended, cleanly.
        let Some(Ok(WatchEvent::Deleted(gone))) = open.next().await else { panic!("expected DELETED") };
        assert_eq!(gone.name_any(), "deny-frontend");
        assert!(open.next().await.is_none(), "the watch ends");
        assert_eq!(server.open_watches(), 0);
        assert_eq!(server.get("AdminNetworkPolicy", None, "deny-frontend"), None);

        for kind in the_crds() {
            let api = dynamic(&client, kind);
            let error = api.list(&ListParams::default().limit(500)).await.unwrap_err();
            let kube::Error::Api(status) = error else { panic!("not an API error: {error:?}") };
            assert_eq!((status.code, status.reason.as_str()), (404, "NotFound"), "{kind}");
            assert_eq!(status.message, "the server could not find the requested resource");
            let error = api.watch(&WatchParams::default(), "0").await.map(|_| ()).unwrap_err();
            assert!(matches!(&error, kube::Error::Api(s) if s.code == 404), "{error:?}");
            assert!(matches!(api.get("x").await, Err(kube::Error::Api(s)) if s.code == 404));
        }
        // The other kinds are served as before; the group is gone from discovery.
        assert!(Api::<Node>::all(client.clone()).list(&ListParams::default()).await.is_ok());
        let groups = client.list_api_groups().await.unwrap();
        assert!(groups.groups.iter().all(|g| g.name != "policy.networking.k8s.io"), "{groups:?}");
        assert!(client.list_api_group_resources("policy.networking.k8s.io/v1alpha1").await.is_err());
        assert_eq!(server.try_put(banp_default()), Err(PutError::NotInstalled(Kind::BaselineAdminNetworkPolicy)));

        // Installed again: served, empty.
        server.set_crds_installed(true);
        assert!(anps.list(&ListParams::default()).await.unwrap().items.is_empty());
        server.try_put(banp_default()).unwrap();
    })
    .await;
}

// ---------------------------------------------------------------------------------------------------------------
// Calico's kinds and ServiceAccounts

#[tokio::test]
async fn calico_kinds_are_discovered_listed_watched_and_bookmarked() {
    use k8s_openapi::api::core::v1::ServiceAccount;
    use netpol_fakeapi::fixtures::{calico_tier, seed_calico, seed_two_namespaces, CALICO_CRD, CALICO_V3};
    use netpol_fakeapi::Calico;
    within(async {
        let server = FakeApiServer::start().unwrap();
        seed_two_namespaces(&server);
        let client = client(&server).await;
        // Not installed by default: no group, and 404s.
        let groups = client.list_api_groups().await.unwrap();
        assert!(groups.groups.iter().all(|g| !g.name.contains("projectcalico.org")), "{groups:?}");
        let tiers = dynamic(&client, Kind::CalicoTier);
        assert!(matches!(tiers.list(&ListParams::default()).await, Err(kube::Error::Api(s)) if s.code == 404));

        server.set_calico(Calico::Crds);
        seed_calico(&server, CALICO_CRD);
        let groups = client.list_api_groups().await.unwrap();
        let names: Vec<&str> = groups.groups.iter().map(|g| g.name.as_str()).collect();
        assert!(names.contains(&"crd.projectcalico.org") && !names.contains(&"projectcalico.org"), "{names:?}");
        let crd = client.list_api_group_resources("crd.projectcalico.org/v1").await.unwrap();
        let mut resources: Vec<(&str, bool)> = crd.resources.iter().map(|r| (r.name.as_str(), r.namespaced)).collect();
        resources.sort();
        assert_eq!(
            resources,
            [
                ("globalnetworkpolicies", false),
                ("globalnetworksets", false),
                ("hostendpoints", false),
                ("networkpolicies", true),
                ("networksets", true),
                ("stagedglobalnetworkpolicies", false),
                ("stagedkubernetesnetworkpolicies", true),
                ("stagednetworkpolicies", true),
                ("tiers", false)
            ]
        );
        // The staged kinds: collections of their own.
        server.try_put(netpol_fakeapi::fixtures::calico_staged_delete_partners(CALICO_CRD)).unwrap();
        let staged = dynamic(&client, Kind::CalicoStagedNetworkPolicy).list(&ListParams::default()).await.unwrap();
        assert_eq!(staged.items.iter().map(ResourceExt::name_any).collect::<Vec<_>>(), ["allow-partners"]);
        assert_eq!(staged.items[0].metadata.namespace.as_deref(), Some("backend"));
        let calico = dynamic(&client, Kind::CalicoNetworkPolicy).list(&ListParams::default()).await.unwrap();
        assert_eq!(calico.items.len(), 1, "the enforced one alone");
        // Host endpoints: cluster-scoped, their spec as written.
        server.try_put(netpol_fakeapi::fixtures::calico_worker_endpoint(CALICO_CRD)).unwrap();
        let heps = dynamic(&client, Kind::CalicoHostEndpoint).list(&ListParams::default()).await.unwrap();
        assert_eq!(heps.items.iter().map(ResourceExt::name_any).collect::<Vec<_>>(), ["worker-1-eth0"]);
        assert_eq!(heps.items[0].metadata.namespace, None);
        assert_eq!(heps.items[0].data["spec"]["expectedIPs"], serde_json::json!(["192.168.1.11"]));
        let expect = [
            (Kind::CalicoTier, "security"),
            (Kind::CalicoGlobalNetworkPolicy, "security.allow-web"),
            (Kind::CalicoGlobalNetworkSet, "blocked"),
            (Kind::CalicoNetworkSet, "partners"),
            (Kind::CalicoNetworkPolicy, "allow-partners"),
        ];
        for (kind, name) in expect {
            let list = dynamic(&client, kind).list(&ListParams::default().limit(500)).await.unwrap();
            assert_eq!(list.items[0].name_any(), name, "{kind:?}");
            assert_eq!(list.items[0].metadata.namespace.is_some(), kind.is_namespaced(), "{kind:?}");
        }
        // Calico's NetworkPolicies and Kubernetes' are different collections.
        assert!(Api::<NetworkPolicy>::all(client.clone()).list(&ListParams::default()).await.unwrap().items.is_empty());
        let accounts = Api::<ServiceAccount>::all(client.clone()).list(&ListParams::default()).await.unwrap();
        assert_eq!(accounts.items[0].labels()["role"], "web");

        // The watcher lists, follows, and resumes from a bookmark.
        let mut stream = watcher(tiers.clone(), watcher::Config::default()).boxed();
        let mut names = Vec::new();
        while !matches!(stream.next().await, Some(Ok(watcher::Event::InitDone))) {}
        server.try_put(calico_tier(CALICO_CRD, "platform", 50.0)).unwrap();
        if let Some(Ok(watcher::Event::Apply(t))) = stream.next().await {
            names.push(t.name_any());
        }
        assert_eq!(names, ["platform"]);
        server.send_bookmarks();
        let bookmarked = server.resource_version();
        server.compact();
        server.drop_watches();
        let gone = server.delete_kind(Kind::CalicoTier, None, "platform").unwrap();
        let Some(Ok(watcher::Event::Delete(t))) = stream.next().await else { panic!("expected a deletion") };
        assert_eq!((t.name_any(), t.resource_version()), ("platform".to_string(), Some(gone.to_string())));
        let watch = watches(&server, &Kind::CalicoTier.path());
        assert_eq!(param(watch.last().unwrap(), "resourceVersion"), Some(bookmarked.to_string().as_str()));
        assert_eq!(
            lists(&server, &Kind::CalicoTier.path()).len(),
            3,
            "the 404, the list above, the watcher's: no relist"
        );

        // The API server's group besides the CRDs': its own objects.
        server.set_calico(Calico::ApiServer);
        assert!(client.list_api_group_resources("projectcalico.org/v3").await.is_ok());
        server.try_put(calico_tier(CALICO_V3, "platform", 50.0)).unwrap();
        let v3 = dynamic(&client, Kind::CalicoV3Tier).list(&ListParams::default()).await.unwrap();
        assert_eq!(v3.items.iter().map(ResourceExt::name_any).collect::<Vec<_>>(), ["platform"]);
        assert!(server.get_kind(Kind::CalicoTier, None, "platform").is_none());
        server.try_put(netpol_fakeapi::fixtures::calico_worker_endpoint(CALICO_V3)).unwrap();
        let hep = dynamic(&client, Kind::CalicoV3HostEndpoint).get("worker-1-eth0").await.unwrap();
        assert_eq!(
            hep.types.as_ref().map(|t| (t.api_version.as_str(), t.kind.as_str())),
            Some((CALICO_V3, "HostEndpoint"))
        );
        // One kind taken out: 404 for it alone.
        server.set_served(Kind::CalicoGlobalNetworkSet, false);
        let error = dynamic(&client, Kind::CalicoGlobalNetworkSet).list(&ListParams::default()).await.unwrap_err();
        assert!(matches!(error, kube::Error::Api(s) if s.code == 404));
        assert!(dynamic(&client, Kind::CalicoNetworkSet).list(&ListParams::default()).await.is_ok());
    })
    .await;
}

// ---------------------------------------------------------------------------------------------------------------
// Cilium's kinds

#[tokio::test]
async fn cilium_kinds_are_discovered_listed_and_watched() {
    use netpol_fakeapi::fixtures::{cilium_deny_web, seed_cilium, seed_two_namespaces, CILIUM};
    within(async {
        let server = FakeApiServer::start().unwrap();
        seed_two_namespaces(&server);
        let client = client(&server).await;
        // Not installed by default: no group, and 404s.
        let groups = client.list_api_groups().await.unwrap();
        assert!(groups.groups.iter().all(|g| g.name != "cilium.io"), "{groups:?}");
        let cnps = dynamic(&client, Kind::CiliumNetworkPolicy);
        assert!(matches!(cnps.list(&ListParams::default()).await, Err(kube::Error::Api(s)) if s.code == 404));
        assert_eq!(
            server.try_put(cilium_deny_web()),
            Err(netpol_fakeapi::PutError::NotInstalled(Kind::CiliumNetworkPolicy))
        );

        server.set_cilium(true);
        seed_cilium(&server);
        let groups = client.list_api_groups().await.unwrap();
        let cilium = groups.groups.iter().find(|g| g.name == "cilium.io").expect("the cilium.io group");
        assert_eq!(cilium.preferred_version.as_ref().map(|v| v.group_version.as_str()), Some(CILIUM));
        let v2 = client.list_api_group_resources(CILIUM).await.unwrap();
        let mut resources: Vec<(&str, &str, bool)> =
            v2.resources.iter().map(|r| (r.name.as_str(), r.kind.as_str(), r.namespaced)).collect();
        resources.sort();
        assert_eq!(
            resources,
            [
                ("ciliumcidrgroups", "CiliumCIDRGroup", false),
                ("ciliumclusterwidenetworkpolicies", "CiliumClusterwideNetworkPolicy", false),
                ("ciliumnetworkpolicies", "CiliumNetworkPolicy", true)
            ]
        );
        let list = cnps.list(&ListParams::default().limit(500)).await.unwrap();
        assert_eq!(list.items.iter().map(ResourceExt::name_any).collect::<Vec<_>>(), ["api-ingress"]);
        assert_eq!(list.items[0].metadata.namespace.as_deref(), Some("backend"));
        assert_eq!(list.items[0].data["spec"]["ingressDeny"][0]["toPorts"][0]["ports"][0]["port"], "9090");
        let ccnps = dynamic(&client, Kind::CiliumClusterwideNetworkPolicy);
        let list = ccnps.list(&ListParams::default()).await.unwrap();
        assert_eq!(list.items.iter().map(ResourceExt::name_any).collect::<Vec<_>>(), ["backend-not-to-frontend"]);
        assert_eq!(list.items[0].metadata.namespace, None);
        // Namespaced collections, and kube-rs's namespaced Api.
        let in_backend: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), "backend", &api_resource(Kind::CiliumNetworkPolicy));
        assert_eq!(in_backend.get("api-ingress").await.unwrap().name_any(), "api-ingress");

        // The watcher lists, follows, and resumes from a bookmark without a relist.
        let mut stream = watcher(cnps.clone(), watcher::Config::default()).boxed();
        while !matches!(stream.next().await, Some(Ok(watcher::Event::InitDone))) {}
        let added = server.try_put(cilium_deny_web()).unwrap();
        let Some(Ok(watcher::Event::Apply(p))) = stream.next().await else { panic!("expected an addition") };
        assert_eq!((p.name_any(), p.resource_version()), ("deny-web".to_string(), Some(added.to_string())));
        server.send_bookmarks();
        let bookmarked = server.resource_version();
        server.compact();
        server.drop_watches();
        let gone = server.delete_kind(Kind::CiliumNetworkPolicy, Some("backend"), "deny-web").unwrap();
        let Some(Ok(watcher::Event::Delete(p))) = stream.next().await else { panic!("expected a deletion") };
        assert_eq!((p.name_any(), p.resource_version()), ("deny-web".to_string(), Some(gone.to_string())));
        let watch = watches(&server, &Kind::CiliumNetworkPolicy.path());
        assert_eq!(param(watch.last().unwrap(), "resourceVersion"), Some(bookmarked.to_string().as_str()));
        assert_eq!(lists(&server, &Kind::CiliumNetworkPolicy.path()).len(), 3, "the 404, the list, the watcher's");

        // Uninstalled: the objects go (DELETED), the paths answer 404 again.
        server.set_cilium(false);
        let Some(Ok(watcher::Event::Delete(p))) = stream.next().await else { panic!("expected a deletion") };
        assert_eq!(p.name_any(), "api-ingress");
        assert!(matches!(ccnps.list(&ListParams::default()).await, Err(kube::Error::Api(s)) if s.code == 404));
    })
    .await;
}

#[tokio::test]
async fn cilium_cidr_groups_are_served_at_v2_and_v2alpha1_and_either_can_be_taken_out() {
    use netpol_fakeapi::fixtures::{cilium_cidr_group, CILIUM, CILIUM_V2ALPHA1};
    within(async {
        let server = FakeApiServer::start().unwrap();
        let client = client(&server).await;
        server.set_cilium(true);
        let partners = |api| cilium_cidr_group(api, "partners", json!({"team": "a"}), &["198.51.100.0/24"]);
        server.try_put(partners(CILIUM)).unwrap();
        // Stored apart: the v2alpha1 collection does not have the v2 object.
        let v2 = dynamic(&client, Kind::CiliumCidrGroup);
        let v2alpha1 = dynamic(&client, Kind::CiliumCidrGroupV2Alpha1);
        assert_eq!(v2.list(&ListParams::default()).await.unwrap().items.len(), 1);
        assert!(v2alpha1.list(&ListParams::default()).await.unwrap().items.is_empty());
        let groups = client.list_api_groups().await.unwrap();
        let cilium = groups.groups.iter().find(|g| g.name == "cilium.io").unwrap();
        let versions: Vec<&str> = cilium.versions.iter().map(|v| v.version.as_str()).collect();
        assert_eq!(versions, ["v2", "v2alpha1"]);

        // An older Cilium: v2 has no CIDR group, v2alpha1 has it (and the object put there).
        server.set_served(Kind::CiliumCidrGroup, false);
        assert!(matches!(v2.list(&ListParams::default()).await, Err(kube::Error::Api(s)) if s.code == 404));
        let names = |list: &k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList| {
            list.resources.iter().map(|r| r.name.clone()).collect::<Vec<_>>()
        };
        let at_v2 = client.list_api_group_resources(CILIUM).await.unwrap();
        assert!(!names(&at_v2).contains(&"ciliumcidrgroups".to_string()), "{at_v2:?}");
        let at_v2alpha1 = client.list_api_group_resources(CILIUM_V2ALPHA1).await.unwrap();
        assert_eq!(names(&at_v2alpha1), ["ciliumcidrgroups"]);
        let mut stream = watcher(v2alpha1.clone(), watcher::Config::default()).boxed();
        while !matches!(stream.next().await, Some(Ok(watcher::Event::InitDone))) {}
        let added = server.try_put(partners(CILIUM_V2ALPHA1)).unwrap();
        let Some(Ok(watcher::Event::Apply(g))) = stream.next().await else { panic!("expected an addition") };
        assert_eq!((g.name_any(), g.resource_version()), ("partners".to_string(), Some(added.to_string())));
        assert_eq!(g.data["spec"]["externalCIDRs"][0], "198.51.100.0/24");
        assert_eq!(g.types.as_ref().map(|t| t.api_version.as_str()), Some(CILIUM_V2ALPHA1));

        // Neither version: not in discovery at all.
        server.set_served(Kind::CiliumCidrGroupV2Alpha1, false);
        let Some(Ok(watcher::Event::Delete(g))) = stream.next().await else { panic!("expected a deletion") };
        assert_eq!(g.name_any(), "partners");
        assert!(client.list_api_group_resources(CILIUM_V2ALPHA1).await.is_err());
    })
    .await;
}

// ---------------------------------------------------------------------------------------------------------------
// Services and their endpoints

#[tokio::test]
async fn services_endpoint_slices_and_endpoints_are_listed_and_watched_as_built_in_kinds() {
    use k8s_openapi::api::core::v1::{Endpoints, Service};
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    use netpol_fakeapi::fixtures::{endpoint_slice, endpoints, service};
    within(async {
        let server = FakeApiServer::start().unwrap();
        let client = client(&server).await;
        server.try_put(service("default", "kubernetes", None)).unwrap();
        server.try_put(endpoint_slice("default", "kubernetes", "kubernetes", &["192.0.2.10"])).unwrap();
        server.try_put(endpoints("default", "kubernetes", &["192.0.2.10"])).unwrap();
        // Discovery: the core group's resources and the discovery.k8s.io group.
        let core = client.list_core_api_resources("v1").await.unwrap();
        let names: Vec<&str> = core.resources.iter().map(|r| r.name.as_str()).collect();
        assert!(names.contains(&"services") && names.contains(&"endpoints"), "{names:?}");
        let discovery = client.list_api_group_resources("discovery.k8s.io/v1").await.unwrap();
        assert_eq!(discovery.resources[0].name, "endpointslices");
        assert!(discovery.resources[0].namespaced);

        // Typed lists (k8s-openapi's types decode what the server sends).
        let services: Api<Service> = Api::all(client.clone());
        let list = services.list(&ListParams::default().limit(500)).await.unwrap();
        assert_eq!(list.items[0].spec.as_ref().and_then(|s| s.selector.clone()), None);
        let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
        let list = slices.list(&ListParams::default()).await.unwrap();
        assert_eq!(list.items[0].address_type, "IPv4");
        let addresses = |s: &EndpointSlice| s.endpoints.clone().unwrap_or_default()[0].addresses.clone();
        assert_eq!(addresses(&list.items[0]), ["192.0.2.10"]);
        let eps: Api<Endpoints> = Api::all(client.clone());
        let list = eps.list(&ListParams::default()).await.unwrap();
        let subsets = list.items[0].subsets.clone().unwrap();
        assert_eq!(subsets[0].addresses.as_ref().unwrap()[0].ip, "192.0.2.10");

        // The watcher follows a change of the endpoints, and relists after 410 Gone.
        let mut stream = watcher(slices.clone(), watcher::Config::default()).boxed();
        while !matches!(stream.next().await, Some(Ok(watcher::Event::InitDone))) {}
        let moved = server.try_put(endpoint_slice("default", "kubernetes", "kubernetes", &["192.0.2.11"])).unwrap();
        let Some(Ok(watcher::Event::Apply(s))) = stream.next().await else { panic!("expected a modification") };
        assert_eq!((addresses(&s), s.resource_version()), (vec!["192.0.2.11".to_string()], Some(moved.to_string())));
        server.compact();
        server.drop_watches();
        server.compact();
        let gone = server.delete_kind(Kind::EndpointSlice, Some("default"), "kubernetes").unwrap();
        server.compact();
        let mut relisted = false;
        loop {
            match stream.next().await {
                Some(Ok(watcher::Event::Init)) => relisted = true,
                Some(Ok(watcher::Event::InitDone)) if relisted => break,
                Some(Ok(watcher::Event::Delete(s))) => {
                    assert_eq!(s.resource_version(), Some(gone.to_string()));
                    break;
                }
                Some(_) => {}
                None => panic!("the watch ended"),
            }
        }
        assert!(slices.list(&ListParams::default()).await.unwrap().items.is_empty());
    })
    .await;
}

#[tokio::test]
async fn a_forbidden_kind_answers_403_with_a_status() {
    within(async {
        let server = FakeApiServer::start().unwrap();
        let client = client(&server).await;
        server.set_forbidden(Kind::Node, true);
        let nodes = Api::<Node>::all(client.clone());
        let error = nodes.list(&ListParams::default()).await.unwrap_err();
        let kube::Error::Api(status) = error else { panic!("not an API error: {error:?}") };
        assert_eq!((status.code, status.reason.as_str()), (403, "Forbidden"));
        assert_eq!(
            status.message,
            "nodes is forbidden: User \"system:anonymous\" cannot list resource \"nodes\" in API group \"\" at the \
             cluster scope"
        );
        let watched = nodes.watch(&WatchParams::default(), "0").await.map(|_| ());
        assert!(matches!(&watched, Err(kube::Error::Api(s)) if s.code == 403), "{watched:?}");
        // Discovery still lists it.
        let core = client.list_core_api_resources("v1").await.unwrap();
        assert!(core.resources.iter().any(|r| r.name == "nodes"));
        server.set_forbidden(Kind::Node, false);
        assert!(nodes.list(&ListParams::default()).await.is_ok());
    })
    .await;
}

#[test]
fn a_404_for_a_crd_not_installed_is_a_status_object_on_the_wire() {
    use std::io::{Read, Write};
    let server = FakeApiServer::start().unwrap();
    server.set_crds_installed(false);
    let mut conn = std::net::TcpStream::connect(server.addr()).unwrap();
    conn.set_read_timeout(Some(STEP_TIMEOUT)).unwrap();
    let path = Kind::ClusterNetworkPolicy.path();
    write!(conn, "GET {path}?limit=500 HTTP/1.1\r\nHost: fakeapi\r\nConnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    conn.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 404 Not Found\r\n"), "{text}");
    assert!(text.to_ascii_lowercase().contains("content-type: application/json"), "{text}");
    let body: Value = serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(
        body,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "the server could not find the requested resource", "reason": "NotFound", "details": {},
            "code": 404})
    );
}

// ---------------------------------------------------------------------------------------------------------------
// Raw watches

#[tokio::test]
async fn raw_watch_streams_events_and_bookmarks_and_ends_at_its_timeout() {
    within(async {
        let server = FakeApiServer::start().unwrap();
        server.put(pod("a", "web", "v1"));
        let start = server.resource_version();
        let pods: Api<Pod> = Api::all(client(&server).await);

        let mut with = pods.watch(&WatchParams::default().timeout(2), &start.to_string()).await.unwrap().boxed();
        let mut without =
            pods.watch(&WatchParams::default().disable_bookmarks(), &start.to_string()).await.unwrap().boxed();
        assert_eq!(server.open_watches(), 2);

        server.put(pod("a", "web", "v2"));
        server.send_bookmarks();
        let deleted_at = server.delete("Pod", Some("a"), "web").unwrap();

        let Some(Ok(WatchEvent::Modified(web))) = with.next().await else { panic!("expected MODIFIED") };
        assert_eq!(web.labels()["version"], "v2");
        let Some(Ok(WatchEvent::Bookmark(mark))) = with.next().await else { panic!("expected BOOKMARK") };
        assert_eq!(mark.metadata.resource_version, (start + 1).to_string());
        assert_eq!((mark.types.kind.as_str(), mark.types.api_version.as_str()), ("Pod", "v1"));
        let Some(Ok(WatchEvent::Deleted(gone))) = with.next().await else { panic!("expected DELETED") };
        assert_eq!(gone.resource_version(), Some(deleted_at.to_string()));

        // Without allowWatchBookmarks there is no bookmark between the two changes.
        assert!(matches!(without.next().await, Some(Ok(WatchEvent::Modified(_)))));
        assert!(matches!(without.next().await, Some(Ok(WatchEvent::Deleted(_)))));

        // timeoutSeconds=2 ends the first stream cleanly.
        let started = tokio::time::Instant::now();
        assert!(with.next().await.is_none());
        assert!(started.elapsed() < Duration::from_secs(5));
        tokio::time::timeout(STEP_TIMEOUT, async {
            while server.open_watches() != 1 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the timed-out watch was not closed");
        let watch = &watches(&server, "/api/v1/pods")[0];
        assert_eq!(param(watch, "timeoutSeconds"), Some("2"));
        assert_eq!(param(watch, "allowWatchBookmarks"), Some("true"));
    })
    .await;
}

#[tokio::test]
async fn raw_watch_from_a_compacted_revision_gets_an_error_event_410() {
    within(async {
        let server = FakeApiServer::start().unwrap();
        let start = server.put(pod("a", "web", "v1"));
        server.put(pod("a", "web", "v2"));
        server.compact();
        let pods: Api<Pod> = Api::all(client(&server).await);
        let mut stream = pods.watch(&WatchParams::default(), &start.to_string()).await.unwrap().boxed();
        let Some(Ok(WatchEvent::Error(status))) = stream.next().await else { panic!("expected an ERROR event") };
        assert_eq!((status.code, status.reason.as_str()), (410, "Expired"));
        assert!(stream.next().await.is_none());
        // Watching from the compaction point itself is fine.
        let mut stream =
            pods.watch(&WatchParams::default(), &server.resource_version().to_string()).await.unwrap().boxed();
        server.put(pod("a", "db", "v1"));
        assert!(matches!(stream.next().await, Some(Ok(WatchEvent::Added(_)))));
    })
    .await;
}

// ---------------------------------------------------------------------------------------------------------------
// kube::runtime::watcher

#[tokio::test]
async fn watcher_lists_then_follows_adds_modifies_and_deletes() {
    within(async {
        let server = FakeApiServer::start().unwrap();
        server.put(pod("a", "web", "v1"));
        server.put(pod("b", "db", "v1"));
        let listed_at = server.resource_version();
        let mut mirror = Mirror::new(Api::all(client(&server).await), watcher::Config::default());

        mirror.until("the initial list is done", |m| m.lists_done == 1).await;
        assert_eq!(mirror.names(), ["a/web", "b/db"]);
        mirror.until_watching(&server, 1).await;

        server.put(pod("a", "cache", "v1"));
        server.put(pod("a", "web", "v2"));
        server.delete("Pod", Some("b"), "db").unwrap();
        mirror.until("three changes arrived", |m| m.changes.len() == 3).await;
        assert_eq!(mirror.changes, ["apply a/cache", "apply a/web", "delete b/db"]);
        assert_eq!(mirror.names(), ["a/cache", "a/web"]);
        assert_eq!(mirror.version_label("a/web"), Some("v2"));
        assert!(mirror.errors.is_empty(), "{:?}", mirror.errors);

        // What kube-rs asked for: one list (page size 500, no resourceVersion: a consistent read), then a
        // watch from the list's revision with bookmarks.
        let list = lists(&server, "/api/v1/pods");
        assert_eq!(list.len(), 1);
        // kube-rs writes the query as `?&limit=500`, with an empty first pair.
        assert_eq!(list[0].query, "&limit=500");
        let watch = watches(&server, "/api/v1/pods");
        assert_eq!(watch.len(), 1);
        assert_eq!(param(&watch[0], "resourceVersion"), Some(listed_at.to_string().as_str()));
        assert_eq!(param(&watch[0], "allowWatchBookmarks"), Some("true"));
        assert_eq!(param(&watch[0], "timeoutSeconds"), Some("290"));
    })
    .await;
}

#[tokio::test]
async fn watcher_pages_through_a_large_initial_list() {
    within(async {
        let server = FakeApiServer::start().unwrap();
        for i in 0..5 {
            server.put(pod("a", &format!("p{i}"), "v1"));
        }
        let config = watcher::Config::default().page_size(2).any_semantic().disable_bookmarks();
        let mut mirror = Mirror::new(Api::namespaced(client(&server).await, "a"), config);
        mirror.until("the initial list is done", |m| m.lists_done == 1).await;
        assert_eq!(mirror.names(), ["a/p0", "a/p1", "a/p2", "a/p3", "a/p4"]);
        let list = lists(&server, "/api/v1/namespaces/a/pods");
        assert_eq!(list.len(), 3);
        // With resourceVersion=0 and a limit, kube-rs leaves resourceVersion out altogether.
        assert_eq!(list[0].query, "&limit=2");
        assert!(list[1..].iter().all(|r| param(r, "continue").is_some()));
        mirror.until_watching(&server, 1).await;
        let watch = &watches(&server, "/api/v1/namespaces/a/pods")[0];
        assert_eq!(param(watch, "allowWatchBookmarks"), None);
    })
    .await;
}

#[tokio::test]
async fn watcher_with_streaming_lists_uses_initial_events() {
    within(async {
        let server = FakeApiServer::start().unwrap();
        server.put(pod("a", "web", "v1"));
        server.put(pod("a", "db", "v1"));
        let mut mirror = Mirror::new(Api::all(client(&server).await), watcher::Config::default().streaming_lists());
        mirror.until("the initial events are done", |m| m.lists_done == 1).await;
        assert_eq!(mirror.names(), ["a/db", "a/web"]);
        server.put(pod("a", "web", "v2"));
        mirror.until("the change arrived", |m| m.changes.len() == 1).await;
        assert_eq!(mirror.version_label("a/web"), Some("v2"));
        assert!(lists(&server, "/api/v1/pods").is_empty());
        let watch = &watches(&server, "/api/v1/pods")[0];
        assert_eq!(param(watch, "sendInitialEvents"), Some("true"));
        assert_eq!(param(watch, "resourceVersionMatch"), Some("NotOlderThan"));
        assert_eq!(param(watch, "resourceVersion"), Some("0"));
    })
    .await;
}

#[tokio::test]
async fn watcher_resumes_after_dropped_watches_without_relisting() {
    within(async {
        let server = FakeApiServer::start().unwrap();
        server.put(pod("a", "web", "v1"));
        server.put(pod("a", "db", "v1"));
        let mut mirror = Mirror::new(Api::all(client(&server).await), watcher::Config::default());
        mirror.until("the initial list is done", |m| m.lists_done == 1).await;
        mirror.until_watching(&server, 1).await;
        server.put(pod("a", "web", "v2"));
        mirror.until("the first change arrived", |m| m.changes.len() == 1).await;
        let last_seen = server.resource_version();

        // The connection drops; the watcher is not polled while these changes happen. (kube-rs reads a chunked
        // body cut short as the end of the watch, not as an error, and watches again from its last revision.)
        server.drop_watches();
        assert_eq!(server.open_watches(), 0);
        server.put(pod("a", "cache", "v1"));
        server.put(pod("a", "db", "v2"));
        server.delete("Pod", Some("a"), "web").unwrap();

        mirror.until("the missed changes arrived", |m| m.changes.len() == 4).await;
        assert_eq!(mirror.changes[1..], ["apply a/cache", "apply a/db", "delete a/web"]);
        assert_eq!(mirror.names(), ["a/cache", "a/db"]);
        assert_eq!(mirror.version_label("a/db"), Some("v2"));
        assert_eq!(mirror.lists_done, 1);
        assert_eq!(lists(&server, "/api/v1/pods").len(), 1, "no relist");
        let watch = watches(&server, "/api/v1/pods");
        assert_eq!(watch.len(), 2);
        assert_eq!(param(&watch[1], "resourceVersion"), Some(last_seen.to_string().as_str()));
    })
    .await;
}

#[tokio::test]
async fn watcher_relists_after_410_when_the_history_was_compacted() {
    within(async {
        let server = FakeApiServer::start().unwrap();
        server.put(pod("a", "web", "v1"));
        server.put(pod("a", "db", "v1"));
        let mut mirror = Mirror::new(Api::all(client(&server).await), watcher::Config::default());
        mirror.until("the initial list is done", |m| m.lists_done == 1).await;
        mirror.until_watching(&server, 1).await;

        // While the watcher is disconnected: a delete, an add and a change, then compaction.
        server.drop_watches();
        server.delete("Pod", Some("a"), "web").unwrap();
        server.put(pod("a", "cache", "v1"));
        server.put(pod("a", "db", "v2"));
        server.compact();

        mirror.until("the relist is done", |m| m.lists_done == 2).await;
        assert_eq!(mirror.names(), ["a/cache", "a/db"]);
        assert_eq!(mirror.version_label("a/db"), Some("v2"));
        let gone = mirror.errors.iter().any(|e| matches!(e, watcher::Error::WatchError(s) if s.code == 410));
        assert!(gone, "no 410 among {:?}", mirror.errors);
        assert_eq!(lists(&server, "/api/v1/pods").len(), 2, "a relist");

        // And it goes on watching from the new list.
        mirror.until_watching(&server, 1).await;
        server.put(pod("a", "web", "v3"));
        mirror.until("the new pod arrived", |m| m.names().contains(&"a/web")).await;
    })
    .await;
}

#[tokio::test]
async fn bookmarks_move_the_watcher_past_changes_it_does_not_watch() {
    within(async {
        let server = FakeApiServer::start().unwrap();
        server.put(pod("a", "web", "v1"));
        let mut mirror = Mirror::new(Api::namespaced(client(&server).await, "a"), watcher::Config::default());
        mirror.until("the initial list is done", |m| m.lists_done == 1).await;
        mirror.until_watching(&server, 1).await;

        // Changes outside the watched namespace move the global revision but send this watch nothing; only a
        // bookmark tells the watcher that it is up to date at the new revision.
        for i in 0..3 {
            server.put(pod("b", &format!("p{i}"), "v1"));
        }
        server.send_bookmarks();
        let bookmarked = server.resource_version();
        // So after a compaction at that revision, the watcher resumes from the bookmark: no 410, no relist.
        server.compact();
        server.drop_watches();
        server.put(pod("a", "db", "v1"));

        mirror.until("the new pod arrived", |m| m.names() == ["a/db", "a/web"]).await;
        assert!(mirror.errors.iter().all(|e| !matches!(e, watcher::Error::WatchError(_))), "{:?}", mirror.errors);
        assert_eq!(mirror.lists_done, 1);
        assert_eq!(lists(&server, "/api/v1/namespaces/a/pods").len(), 1, "no relist");
        let watch = watches(&server, "/api/v1/namespaces/a/pods");
        assert_eq!(watch.len(), 2);
        assert_eq!(param(&watch[1], "resourceVersion"), Some(bookmarked.to_string().as_str()));
    })
    .await;
}

#[tokio::test]
async fn without_bookmarks_the_same_compaction_forces_a_relist() {
    within(async {
        let server = FakeApiServer::start().unwrap();
        server.put(pod("a", "web", "v1"));
        let config = watcher::Config::default().disable_bookmarks();
        let mut mirror = Mirror::new(Api::namespaced(client(&server).await, "a"), config);
        mirror.until("the initial list is done", |m| m.lists_done == 1).await;
        mirror.until_watching(&server, 1).await;
        for i in 0..3 {
            server.put(pod("b", &format!("p{i}"), "v1"));
        }
        server.send_bookmarks();
        server.compact();
        server.drop_watches();
        mirror.until("the relist is done", |m| m.lists_done == 2).await;
        assert_eq!(lists(&server, "/api/v1/namespaces/a/pods").len(), 2);
    })
    .await;
}

// ---------------------------------------------------------------------------------------------------------------
// The Rust API

#[test]
fn works_without_an_async_runtime_and_refuses_bad_objects() {
    let server = FakeApiServer::start().unwrap();
    assert!(server.url().starts_with("http://127.0.0.1:"));
    assert_eq!(server.resource_version(), 1);
    assert_eq!(server.put(json!({"kind": "Service", "metadata": {"name": "x"}})), 0);
    assert!(server.try_put(json!({"kind": "Pod", "metadata": {"name": "x"}})).is_err());
    assert_eq!(server.resource_version(), 1);
    assert_eq!(server.put(namespace("a")), 2);
    assert_eq!(server.get("Namespace", None, "a").unwrap()["metadata"]["resourceVersion"], "2");
    assert_eq!(server.delete("Pod", Some("a"), "missing"), None);
    assert_eq!(server.delete("Namespace", None, "a"), Some(3));
    assert_eq!(server.open_watches(), 0);
    assert!(server.requests().is_empty());
}

/// Sends a raw HTTP/1.1 request and returns the response bytes read until `stop` holds or the server closes.
fn raw_watch(server: &FakeApiServer, query: &str, stop: impl Fn(&str) -> bool) -> (std::net::TcpStream, String) {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(server.addr()).unwrap();
    conn.set_read_timeout(Some(STEP_TIMEOUT)).unwrap();
    write!(conn, "GET /api/v1/pods?{query} HTTP/1.1\r\nHost: fakeapi\r\n\r\n").unwrap();
    let mut text = String::new();
    let mut buf = [0u8; 4096];
    while !stop(&text) {
        let n = conn.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        text.push_str(std::str::from_utf8(&buf[..n]).unwrap());
    }
    (conn, text)
}

#[test]
fn on_the_wire_a_timeout_ends_the_chunked_body_and_drop_watches_cuts_it() {
    use std::io::Read;
    let server = FakeApiServer::start().unwrap();
    server.put(pod("a", "web", "v1"));

    let (_, ended) = raw_watch(&server, "watch=true&resourceVersion=1&timeoutSeconds=1", |t| t.ends_with("0\r\n\r\n"));
    assert!(ended.starts_with("HTTP/1.1 200 OK\r\n"), "{ended}");
    assert!(ended.to_ascii_lowercase().contains("transfer-encoding: chunked"), "{ended}");
    assert!(ended.contains(r#"{"type":"ADDED","object":{"#), "{ended}");
    assert!(ended.ends_with("0\r\n\r\n"), "a clean end of the body: {ended}");

    let (mut conn, mut cut) = raw_watch(&server, "watch=1&resourceVersion=1", |t| t.contains("\"ADDED\""));
    server.drop_watches();
    conn.read_to_string(&mut cut).unwrap();
    assert!(cut.contains("\"ADDED\""), "{cut}");
    assert!(!cut.ends_with("0\r\n\r\n"), "the body must be cut short: {cut}");
}
