//! netpol-input: what both the command line and the HTTP API read, over `netpol-core`. Manifests from files,
//! directories and stdin ([`files`]), flows in the JSON Lines query contract with endpoint and port parsing
//! ([`query`]), and the line of a field in a manifest's text ([`locate`]).

#![forbid(unsafe_code)]

pub mod files;
pub mod flowlog;
pub mod generate;
pub mod locate;
pub mod overlay;
pub mod query;
pub mod replay;

/// The CNI `--cni` names for every engine built from inputs (`None`: auto, from the cluster's objects).
static CNI: std::sync::OnceLock<Option<netpol_core::cni::Cni>> = std::sync::OnceLock::new();

/// Sets the CNI for the process's engines (the first call wins).
pub fn set_cni(cni: Option<netpol_core::cni::Cni>) {
    let _ = CNI.set(cni);
}

/// The CNI given with `--cni`, if any.
pub fn cni() -> Option<netpol_core::cni::Cni> {
    CNI.get().copied().flatten()
}

/// The `cni` member of JSON outputs: `{"name": "cilium", "auto": "Cilium policies present"}` (`auto` null when
/// given with `--cni`).
pub fn cni_json(e: &netpol_core::compile::Engine) -> serde_json::Value {
    let auto = match e.cni_source() {
        netpol_core::cni::CniSource::Auto(why) => serde_json::Value::String(why),
        netpol_core::cni::CniSource::Given => serde_json::Value::Null,
    };
    serde_json::json!({"name": e.cni().as_str(), "auto": auto})
}

/// The `cni: …` header line of text outputs (`cni: cilium (auto: Cilium policies present)`, `cni: calico (--cni)`).
pub fn cni_header(e: &netpol_core::compile::Engine) -> String {
    netpol_core::cni::header(e.cni(), &e.cni_source())
}
