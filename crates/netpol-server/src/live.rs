//! `netpol serve` on a live cluster (the `kube` feature): the server's [`AppState`] is where `netpol-kube`'s watch
//! task publishes its models ([`netpol_kube::Publish`]), and its counters join `/metrics`. `netpol-kube` knows
//! nothing of the server.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use netpol_core::compile::Engine;
use netpol_core::lint;
use netpol_kube::{Client, LiveMetrics, Publish, Update};

use crate::{AppState, Expensive, Inner, Limits, Metrics, Model, ServeOptions, DEFAULT_BODY_LIMIT};

impl AppState {
    /// A state for a live cluster at `server`: an empty model at revision 0 until [`run`] publishes the first full
    /// list (`/healthz` and the API answer 503 until then).
    pub fn live(server: &str) -> AppState {
        AppState {
            inner: Arc::new(Inner {
                model: ArcSwap::from_pointee(Model::new(Engine::new(Default::default()), 0.0, Vec::new())),
                files: Vec::new(),
                metrics: Metrics::default(),
                reload_lock: Mutex::new(()),
                ready: AtomicBool::new(false),
                live: Some(Arc::new(LiveMetrics::new(server))),
            }),
            body_limit: DEFAULT_BODY_LIMIT,
            lint_config: Arc::new(lint::Config::default()),
            limits: Arc::new(Limits::default()),
            expensive: Arc::new(Expensive::new(Limits::default().max_expensive())),
        }
    }

    /// The live source's counters, when the model comes from a cluster.
    pub fn live_metrics(&self) -> Option<Arc<LiveMetrics>> {
        self.inner.live.clone()
    }
}

impl Publish for AppState {
    fn publish(&self, update: Update) -> u64 {
        let model = Model::with_staged(
            std::sync::Arc::unwrap_or_clone(update.engine),
            update.staged,
            update.compile_seconds,
            update.diagnostics,
        );
        model.set_resource_version(update.resource_versions);
        AppState::publish(self, model)
    }

    fn advance(&self, resource_versions: String) {
        self.model().set_resource_version(resource_versions);
    }
}

/// Keeps `state`'s model current with the cluster ([`netpol_kube::run`]: list, watch, apply in batches). Runs
/// until the task is dropped.
pub async fn run(state: AppState, client: Client) {
    let Some(metrics) = state.live_metrics() else {
        tracing::error!("the server state has no live source");
        return;
    };
    netpol_kube::run_with_cni(state, client, metrics, netpol_input::cni()).await;
}

/// With `opts.cluster`: connects to it, and returns the state its watch task (started here) keeps current.
pub(crate) async fn start(opts: &ServeOptions) -> anyhow::Result<Option<AppState>> {
    let Some(source) = &opts.cluster else { return Ok(None) };
    let (client, server) = source.client().await?;
    let state = AppState::live(&server)
        .with_body_limit(opts.body_limit)
        .with_lint_config(opts.lint_config.clone())
        .with_limits(opts.limits.clone());
    tokio::spawn(run(state.clone(), client));
    Ok(Some(state))
}
