//! The `netpol` command line: argument parsing, file I/O, output formats and exit codes. All answers come
//! from `netpol-core`.
//!
//! Exit codes: 0 success; 1 "found something" (a query line errored, a matrix/explain ran fine but... see each
//! command); 2 usage error, unreadable input, or invalid manifests with `--strict`.
//!
//! Cargo features: `server` (`serve`), `kube` (`--kubeconfig`, `--context`, `--in-cluster`), `lab` (`lab`,
//! `connectivity-test`, `observe`, `nft stats`). Without one, its commands and flags are still parsed, and refused
//! with a message naming the feature (exit code 2).

#![forbid(unsafe_code)]

#[cfg(feature = "lab")]
use netpol::lab_cmd;
use netpol::{assert_cmd, describe, diff_cmd, flows_cmd, lint_cmd, matrix_out, style, MatrixFormat, TableOrJson};
use netpol_input::files as input;
use netpol_input::query;
#[cfg(feature = "kube")]
use netpol_kube as live;
#[cfg(feature = "server")]
use netpol_server as serve;

use std::io::{IsTerminal, Write as _};
use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(name = "netpol", version, about = "What do these Kubernetes NetworkPolicies really allow, and why?")]
struct Cli {
    /// More logs on stderr (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Exit with status 2 when any input object is invalid (by default invalid objects are reported and skipped).
    #[arg(long, global = true)]
    strict: bool,
    /// The CNI whose reading of NetworkPolicy v1's corners the answers follow (an ipBlock covering pods' or
    /// nodes' addresses, a node's traffic to its own pods). auto: Cilium policies → cilium, Calico objects →
    /// calico, Antrea policies → antrea, else the CNI's agent among the pods and workloads (`k8s-app: cilium` →
    /// cilium, `k8s-app: calico-node` → calico, `component: antrea-agent` → antrea, `app.kubernetes.io/name:
    /// netpol-agent` → netpol), else generic (the Kubernetes API's reading); `netpol agent`: netpol. Every output
    /// names the one it follows.
    #[arg(long, global = true, value_enum, default_value = "auto")]
    cni: CniArg,
    #[command(subcommand)]
    cmd: Cmd,
}

/// A live cluster as the input, instead of `-f` manifests.
/// One request on the connection, for Cilium's L7 rules (`explain`).
#[derive(clap::Args, Debug, Default)]
struct RequestArgs {
    /// An HTTP request on the connection: `METHOD PATH` (e.g. `GET /api/v1`) or just `PATH` (GET).
    #[arg(long = "http", value_name = "REQUEST", conflicts_with = "dns")]
    http: Option<String>,
    /// A header of the HTTP request, `Name: value` (repeatable).
    #[arg(long = "http-header", value_name = "HEADER", requires = "http")]
    http_headers: Vec<String>,
    /// The HTTP request's Host (authority).
    #[arg(long = "http-host", value_name = "HOST", requires = "http")]
    http_host: Option<String>,
    /// A DNS query on the connection, for this name.
    #[arg(long = "dns", value_name = "NAME")]
    dns: Option<String>,
}

impl RequestArgs {
    fn request(&self, proto: netpol_core::portset::Protocol) -> anyhow::Result<Option<netpol_core::l7::Request>> {
        use netpol_core::l7::Request;
        if let Some(d) = &self.dns {
            return Ok(Some(Request::Dns(query::parse_dns_query(d).map_err(anyhow::Error::msg)?)));
        }
        let Some(h) = &self.http else { return Ok(None) };
        if proto != netpol_core::portset::Protocol::Tcp {
            anyhow::bail!("--http: an HTTP request needs a TCP port, not {proto}");
        }
        let (method, path) = query::http_request_line(h);
        let mut headers = std::collections::BTreeMap::new();
        for x in &self.http_headers {
            let (n, v) =
                x.split_once(':').ok_or_else(|| anyhow::anyhow!("--http-header `{x}`: expected `Name: value`"))?;
            headers.insert(n.trim().to_string(), v.trim_start().to_string());
        }
        let r = query::http_request(method, path, self.http_host.as_deref(), &headers).map_err(anyhow::Error::msg)?;
        Ok(Some(Request::Http(r)))
    }
}

#[derive(clap::Args, Clone, Debug, Default)]
struct ClusterArgs {
    /// Read Namespaces, Pods and NetworkPolicies from the API server of this kubeconfig instead of -f ($KUBECONFIG
    /// is used when neither -f nor --kubeconfig is given).
    #[arg(long, value_name = "PATH", env = "KUBECONFIG", hide_env_values = true)]
    kubeconfig: Option<String>,
    /// The kubeconfig context (default: its current context); without --kubeconfig or $KUBECONFIG, of
    /// ~/.kube/config.
    #[arg(long, value_name = "NAME")]
    context: Option<String>,
    /// Read from the cluster this runs in, with the pod's service account.
    #[arg(long)]
    in_cluster: bool,
}

/// Where a command reads the cluster from.
enum Inputs {
    Files(Vec<String>),
    #[cfg(feature = "kube")]
    Cluster(live::Source),
}

/// A command, or a flag, that needs a cargo feature this netpol was built without (exit code 2).
#[cfg(not(all(feature = "server", feature = "kube", feature = "lab")))]
fn missing_feature(what: &str, feature: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "{what} needs the `{feature}` feature, and this netpol was built without it (cargo build -p netpol --features \
         {feature})"
    )
}

/// The arguments of a command whose feature is off: taken as they come, then refused by [`missing_feature`].
#[cfg(not(all(feature = "server", feature = "lab")))]
#[derive(clap::Args)]
#[allow(dead_code)]
struct Disabled {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    args: Vec<String>,
}

/// `-f` or a cluster, never both. `kubeconfig_on_cli`: `--kubeconfig` was typed (not taken from $KUBECONFIG,
/// which only applies when `-f` is not given).
fn inputs(files: Vec<String>, c: ClusterArgs, kubeconfig_on_cli: bool) -> anyhow::Result<Inputs> {
    let cluster_flags = kubeconfig_on_cli || c.context.is_some();
    if c.in_cluster {
        if !files.is_empty() || cluster_flags {
            anyhow::bail!("--in-cluster cannot be combined with -f, --kubeconfig or --context");
        }
        #[cfg(feature = "kube")]
        return Ok(Inputs::Cluster(live::Source::InCluster));
        #[cfg(not(feature = "kube"))]
        return Err(missing_feature("reading a live cluster (--in-cluster)", "kube"));
    }
    if !files.is_empty() {
        if cluster_flags {
            anyhow::bail!("give the input either with -f or with --kubeconfig/--context, not both");
        }
        return Ok(Inputs::Files(files));
    }
    if c.kubeconfig.is_some() || c.context.is_some() {
        #[cfg(feature = "kube")]
        {
            let paths = c
                .kubeconfig
                .map(|k| std::env::split_paths(&k).filter(|p| !p.as_os_str().is_empty()).collect())
                .unwrap_or_default();
            return Ok(Inputs::Cluster(live::Source::Kubeconfig { paths, context: c.context }));
        }
        #[cfg(not(feature = "kube"))]
        return Err(missing_feature("reading a live cluster (--kubeconfig, --context or $KUBECONFIG)", "kube"));
    }
    anyhow::bail!(
        "no input: give manifests with -f FILE|DIR|- (repeatable), or a cluster with --kubeconfig PATH, --context NAME \
         or --in-cluster"
    )
}

/// `-f` of the commands that read manifests.
const FILES_HELP: &str = "Manifests: files, directories (recursive: *.yaml, *.yml, *.json) or - for stdin. Repeatable";
/// `-o table|json`.
const OUTPUT_TABLE_JSON: &str = "Output format: table, or json";

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum CniArg {
    Auto,
    Generic,
    Cilium,
    Calico,
    Antrea,
    /// netpol's own node agent (`netpol agent`): the generic reading, and a node's own traffic to its pods exempt.
    Netpol,
}

impl CniArg {
    fn cni(self) -> Option<netpol_core::cni::Cni> {
        use netpol_core::cni::Cni;
        match self {
            CniArg::Auto => None,
            CniArg::Generic => Some(Cni::Generic),
            CniArg::Netpol => Some(Cni::Netpol),
            CniArg::Cilium => Some(Cni::Cilium),
            CniArg::Calico => Some(Cni::Calico),
            CniArg::Antrea => Some(Cni::Antrea),
        }
    }
}

use netpol_input::cni_header;

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
#[cfg_attr(not(feature = "agent"), allow(dead_code))]
enum FlowLogFormat {
    Netpol,
    Hubble,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
#[cfg_attr(not(feature = "agent"), allow(dead_code))]
enum AgentMode {
    Enforce,
    Audit,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum TextOrJson {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum NftFormat {
    Nft,
    Json,
}

#[derive(Subcommand)]
enum NftAction {
    /// Per policy rule packet/byte counters (and drops per isolation) of the ruleset loaded in a lab.
    #[cfg(feature = "lab")]
    Stats {
        #[arg(long, default_value = lab_cmd::DEFAULT_PREFIX)]
        prefix: String,
        #[arg(short = 'o', long, value_enum, default_value = "table", help = OUTPUT_TABLE_JSON)]
        output: TableOrJson,
    },
    #[cfg(not(feature = "lab"))]
    #[command(hide = true, disable_help_flag = true)]
    Stats(Disabled),
}

#[cfg(feature = "lab")]
#[derive(Subcommand)]
enum LabAction {
    /// Create the lab for a cluster and load its ruleset.
    Up {
        #[arg(short = 'f', long = "filename", required = true, help = FILES_HELP)]
        files: Vec<String>,
        #[arg(long, default_value = lab_cmd::DEFAULT_PREFIX)]
        prefix: String,
        /// Simulated nodes, joined by a routed fabric, each with the ruleset: the cluster's Nodes when it has
        /// exactly this many (pods on their nodeName), else node0, node1, ... (pods spread evenly). Default: one.
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..=253))]
        nodes: Option<u16>,
        /// Start one `netpol agent` per node (in the node's namespace, reading -f's files, re-read when they change):
        /// the agents program their nodes from then on. Needs --nodes N with the cluster's N Nodes.
        #[cfg(feature = "agent")]
        #[arg(long, requires = "nodes")]
        agent: bool,
        /// With --agent: serve the cluster from an API server of the lab's (netpol's fake one, which takes kubectl's
        /// writes), write its kubeconfig here, and have the agents watch it instead of reading the files.
        #[cfg(feature = "agent")]
        #[arg(long, value_name = "FILE", requires = "agent")]
        kubeconfig_out: Option<std::path::PathBuf>,
    },
    /// The lab's API server (started by `lab up --agent --kubeconfig-out`).
    #[cfg(feature = "agent")]
    #[command(hide = true)]
    Api {
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<String>,
        #[arg(long, value_name = "FILE")]
        kubeconfig_out: std::path::PathBuf,
    },
    /// Re-apply after the manifests changed: pods added/removed, ruleset replaced in one transaction.
    Apply {
        #[arg(short = 'f', long = "filename", required = true, help = FILES_HELP)]
        files: Vec<String>,
        #[arg(long, default_value = lab_cmd::DEFAULT_PREFIX)]
        prefix: String,
    },
    /// Remove every namespace of the lab (also after a crash).
    Down {
        #[arg(long, default_value = lab_cmd::DEFAULT_PREFIX)]
        prefix: String,
    },
}

#[derive(Subcommand)]
enum FlowsCmd {
    /// Replay observed connections (Hubble, Calico, kube-network-policies, Inspektor Gadget, netpol flow logs)
    /// against the current policies and a proposed change: the observed traffic the change would cut or open, and
    /// where the log and the model disagree.
    Replay {
        /// The cluster: its pods, namespaces and policies in force (files, directories, -).
        #[arg(short = 'f', long = "filename", help = FILES_HELP)]
        files: Vec<String>,
        #[command(flatten)]
        cluster: ClusterArgs,
        /// The proposed change: policy manifests applied over the cluster, as `kubectl apply -f` would (repeatable).
        #[arg(long = "against", value_name = "NEW")]
        against: Vec<String>,
        /// The proposed change from git: the policies under PATH at OLD_REV replaced by those at NEW_REV (the ones
        /// NEW_REV no longer has deleted).
        #[arg(long, num_args = 3, value_names = ["OLD_REV", "NEW_REV", "PATH"], conflicts_with = "against")]
        git: Vec<String>,
        /// The logs' format (default: detected on every line).
        #[arg(long = "flow-format", value_enum)]
        flow_format: Option<flows_cmd::FormatArg>,
        #[arg(
            short = 'o',
            long,
            value_enum,
            default_value = "text",
            help = "Output format: text, json, or markdown (a pull-request comment)"
        )]
        output: flows_cmd::ReplayFormat,
        /// Explanations for every flow in -o json (default: only the changed and disagreeing ones).
        #[arg(long)]
        explain: bool,
        /// Exit with status 1 when the change would deny observed traffic that is allowed now.
        #[arg(long)]
        fail_on_breakage: bool,
        /// Flow log files (`-`: stdin; gzip is read as such).
        #[arg(required = true, value_name = "FLOWLOG")]
        logs: Vec<String>,
    },
}

#[derive(Subcommand)]
enum Cmd {
    /// Answer flows given as JSON Lines (stdin or --flows): one output line per input line, with a verdict.
    Query {
        #[arg(short = 'f', long = "filename", help = FILES_HELP)]
        files: Vec<String>,
        #[command(flatten)]
        cluster: ClusterArgs,
        /// JSON Lines file of flows (default: stdin).
        #[arg(long)]
        flows: Option<String>,
        /// Add an "explain" object to every answer.
        #[arg(long)]
        explain: bool,
        /// Namespace for pod names given without one.
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
    },
    /// Explain the verdict of one flow: which policies isolate each side and which rule allows, or why none (and,
    /// with Calico staged policies in the input, the verdict they would give).
    Explain {
        #[arg(short = 'f', long = "filename", help = FILES_HELP)]
        files: Vec<String>,
        #[command(flatten)]
        cluster: ClusterArgs,
        /// Source: namespace/pod, pod (in -n), or an IP address.
        src: String,
        /// Destination: namespace/pod, pod (in -n), or an IP address.
        dst: String,
        /// PORT or PORT/PROTOCOL (TCP default); for ICMP `icmp` (an echo request), `icmp:TYPE` or `icmp:TYPE:CODE` (and
        /// `icmpv6`).
        port: String,
        /// Namespace of SRC and DST pod names given without one.
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
        /// The DNS name DST was resolved from (what `domainNames` and Cilium's `toFQDNs` peers match), e.g.
        /// api.example.com.
        #[arg(long = "dst-fqdn", value_name = "NAME")]
        dst_fqdn: Option<String>,
        #[command(flatten)]
        request: RequestArgs,
        #[arg(
            short = 'o',
            long,
            value_enum,
            default_value = "text",
            help = "Output format: text, or json (the explanation as an object)"
        )]
        output: TextOrJson,
    },
    /// Pod-to-pod connectivity for given ports, or over the whole port space.
    Matrix {
        #[arg(short = 'f', long = "filename", help = FILES_HELP)]
        files: Vec<String>,
        #[command(flatten)]
        cluster: ClusterArgs,
        /// PORT[/PROTOCOL], repeatable. Without it: allowed port ranges over the whole port space.
        #[arg(long = "port")]
        ports: Vec<String>,
        /// Only pods of this namespace.
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        #[arg(
            short = 'o',
            long,
            value_enum,
            default_value = "table",
            help = "Output format: table (pods with identical rows and columns grouped), csv, json, or summary (pair counts per port)"
        )]
        output: MatrixFormat,
    },
    /// Print the nftables ruleset that enforces the policies (nft syntax, or libnftables JSON with -o json).
    #[command(args_conflicts_with_subcommands = true)]
    Nft {
        #[command(subcommand)]
        action: Option<NftAction>,
        #[arg(short = 'f', long = "filename", help = FILES_HELP)]
        files: Vec<String>,
        #[arg(
            short = 'o',
            long,
            value_enum,
            default_value = "nft",
            help = "Output format: nft (the syntax of `nft -f`), or json (libnftables JSON)"
        )]
        output: NftFormat,
    },
    /// Network-namespace lab: one namespace per pod, routed through a node namespace that enforces the ruleset.
    #[cfg(feature = "lab")]
    Lab {
        #[command(subcommand)]
        action: LabAction,
    },
    #[cfg(not(feature = "lab"))]
    #[command(hide = true, disable_help_flag = true)]
    Lab(Disabled),
    /// JSON Lines flow log of the lab's data-plane verdicts for new connections (like Hubble's flow log).
    #[cfg(feature = "lab")]
    Observe {
        #[arg(long, default_value = lab_cmd::DEFAULT_PREFIX)]
        prefix: String,
        /// Manifests, to name pods instead of printing addresses.
        #[arg(short = 'f', long = "filename")]
        files: Vec<String>,
        /// Stop after this many flows.
        #[arg(long)]
        count: Option<usize>,
        /// Stop after this many seconds.
        #[arg(long)]
        seconds: Option<u64>,
    },
    #[cfg(not(feature = "lab"))]
    #[command(hide = true, disable_help_flag = true)]
    Observe(Disabled),
    /// Bring a lab up (or use a running one), probe every flow with real connections, compare with the verdicts.
    #[cfg(feature = "lab")]
    ConnectivityTest {
        #[arg(short = 'f', long = "filename", required = true, help = FILES_HELP)]
        files: Vec<String>,
        /// JSON Lines flows (the `query` contract); default: every pod pair on every declared container port.
        #[arg(long)]
        flows: Option<String>,
        #[arg(long, default_value = lab_cmd::DEFAULT_PREFIX)]
        prefix: String,
        /// Nodes of a lab this command creates (see `lab up --nodes`); a running lab is probed as it is.
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..=253))]
        nodes: Option<u16>,
        /// Keep a lab this command created (default: remove it at the end).
        #[arg(long)]
        keep: bool,
        /// Probe timeout in milliseconds (a dropped connection is observed as a timeout).
        #[arg(long, default_value_t = 1000)]
        timeout_ms: u64,
    },
    #[cfg(not(feature = "lab"))]
    #[command(hide = true, disable_help_flag = true)]
    ConnectivityTest(Disabled),
    /// Find the classic NetworkPolicy mistakes (codes NP001..; `--list` prints the catalogue).
    Lint {
        #[arg(short = 'f', long = "filename", help = FILES_HELP)]
        files: Vec<String>,
        #[command(flatten)]
        cluster: ClusterArgs,
        #[arg(
            short = 'o',
            long,
            value_enum,
            default_value = "text",
            help = "Output format: text (grouped by file and object), json, or sarif (SARIF 2.1.0, for code scanning)"
        )]
        output: lint_cmd::LintFormat,
        /// Exit with status 1 when a finding is at or above this severity.
        #[arg(long, value_enum, default_value = "error")]
        fail_on: lint_cmd::FailOn,
        /// Skip a rule (code or name), repeatable.
        #[arg(long)]
        disable: Vec<String>,
        /// Settings file (default: .netpol.yaml in the current directory, if present).
        #[arg(long)]
        config: Option<String>,
        /// Print the rule catalogue and exit.
        #[arg(long)]
        list: bool,
    },
    /// Connectivity delta between two policy sets: flows newly allowed and newly denied, with the cause.
    Diff {
        /// The old manifests (files, directories, -), repeatable; with --staged, the manifests (or a cluster).
        #[arg(short = 'f', long = "filename", required_unless_present_any = ["git", "staged"])]
        old: Vec<String>,
        /// With --staged: a live cluster instead of -f.
        #[command(flatten)]
        cluster: ClusterArgs,
        /// The new manifests, repeatable.
        #[arg(long = "against", required_unless_present_any = ["git", "staged"])]
        new: Vec<String>,
        /// Compare the enforced policies of -f with the same cluster as if its Calico staged policies were
        /// enforced (StagedNetworkPolicy, StagedGlobalNetworkPolicy, StagedKubernetesNetworkPolicy).
        #[arg(long, conflicts_with_all = ["new", "git"])]
        staged: bool,
        /// Compare two git revisions of a directory instead: OLD_REV NEW_REV PATH.
        #[arg(long, num_args = 3, value_names = ["OLD_REV", "NEW_REV", "PATH"], conflicts_with_all = ["old", "new"])]
        git: Vec<String>,
        /// Compare only the pod pairs inside this namespace.
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        #[arg(
            short = 'o',
            long,
            value_enum,
            default_value = "text",
            help = "Output format: text, json, or markdown (a pull-request comment)"
        )]
        output: diff_cmd::DiffFormat,
        /// Exit with status 1 when anything is newly allowed.
        #[arg(long)]
        fail_on_new_allows: bool,
    },
    /// The policies observed traffic needs (from flow logs), one per workload and direction, checked by the engine:
    /// coverage, observed denials, no collateral change, over-allow, stability under churn.
    Generate {
        /// The cluster: its pods, namespaces and policies in force (files, directories, -).
        #[arg(short = 'f', long = "filename", help = FILES_HELP)]
        files: Vec<String>,
        #[command(flatten)]
        cluster: ClusterArgs,
        /// Flow logs (Hubble, Calico, kube-network-policies, Inspektor Gadget, netpol; `-`: stdin; gzip read as such).
        #[arg(long = "from-flows", value_name = "FLOWLOG", required = true, num_args = 1..)]
        from_flows: Vec<String>,
        /// Only workloads of this namespace become subjects (their peers may be anywhere).
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        /// The dialect to write.
        #[arg(long, value_enum, default_value = "networkpolicy")]
        dialect: flows_cmd::DialectArg,
        /// One file per policy in this directory instead of stdout.
        #[arg(long, value_name = "DIR")]
        output_dir: Option<std::path::PathBuf>,
        /// The report to this file instead of stderr.
        #[arg(long, value_name = "FILE")]
        report: Option<std::path::PathBuf>,
        #[arg(short = 'o', long, value_enum, default_value = "text", help = "Report format: text or json")]
        output: TextOrJson,
        /// Do not fail when a generated policy allows a connection the log shows denied.
        #[arg(long)]
        allow_observed_denials: bool,
        /// The logs' format (default: detected on every line).
        #[arg(long = "flow-format", value_enum)]
        flow_format: Option<flows_cmd::FormatArg>,
        /// Also enforce the generated set in the lab (root, nftables) and probe every observed connection: the
        /// kernel must agree with the engine on each (`connectivity-test`).
        #[arg(long)]
        prove: bool,
        /// The lab's name prefix for --prove.
        #[arg(long, default_value = "npgen")]
        prefix: String,
    },
    /// Enforce one node's share of the policies in this node's kernel (its own nftables table), as a DaemonSet:
    /// the egress of the pods on the node and the ingress of the pods on the node, from a watched cluster (or
    /// manifests, re-read when they change).
    #[cfg(feature = "agent")]
    Agent {
        /// The node this agent enforces for (its pods are those whose spec.nodeName is this).
        #[arg(long, env = "NODE_NAME")]
        node: String,
        /// Manifests instead of a cluster (re-read when a file changes, checked every second).
        #[arg(short = 'f', long = "filename")]
        files: Vec<String>,
        #[command(flatten)]
        cluster: ClusterArgs,
        /// enforce: drop what the policies deny; audit: count and log it (prefix netpol-audit), drop nothing.
        #[arg(long, value_enum, default_value = "enforce")]
        mode: AgentMode,
        /// Serve Prometheus metrics (`/metrics`) and readiness (`/healthz`) on this address.
        #[arg(long, value_name = "HOST:PORT")]
        metrics_listen: Option<std::net::SocketAddr>,
        /// Program once and exit.
        #[arg(long)]
        once: bool,
        /// Interface name pattern of the node's pods (repeatable; `veth*`, `cali*`, `lxc*`: nft's trailing `*`):
        /// forwarded traffic from or to such an interface whose address is no pod of the node the agent knows is
        /// dropped until a program includes the pod (fail closed for new pods).
        #[arg(long = "pod-interface", value_name = "PATTERN")]
        pod_interfaces: Vec<String>,
        /// Write a flow log of the node's new connections and drops, with the rules that decided them, to this
        /// file (`-`: stdout), as JSON Lines.
        #[arg(long, value_name = "FILE")]
        flow_log: Option<String>,
        /// The flow log's format: netpol (the neutral flow record) or hubble (`{"flow": ...}` as hubble observe -o
        /// json writes it).
        #[arg(long, value_enum, default_value = "netpol", value_name = "FORMAT")]
        flow_log_format: FlowLogFormat,
        /// Compare the kernel's verdict of the traced new connections (every one, or one in N: --self-check-sample)
        /// with the engine's; disagreements are counted (netpol_agent_self_check_disagreements_total) and logged
        /// with both explanations.
        #[arg(long)]
        self_check: bool,
        /// With --self-check: compare one in N of the new connections judged on this node (counted in the order
        /// they are traced: the 1st, the N+1th, the 2N+1th, ...); 1 compares every one.
        #[arg(
            long,
            value_name = "N",
            default_value_t = 1,
            requires = "self_check",
            value_parser = clap::value_parser!(u64).range(1..)
        )]
        self_check_sample: u64,
        /// Program this network namespace instead of the agent's own (a lab's node, while the agent reaches the API
        /// server from the host's namespace).
        #[arg(long, value_name = "NAME")]
        netns: Option<String>,
        /// With a cluster: events arriving within this many milliseconds of a batch's first one are programmed in
        /// one transaction (events that queued during a program are always taken together).
        #[arg(long, value_name = "MS", default_value_t = netpol_agent::BATCH_WINDOW.as_millis() as u64)]
        batch_window_ms: u64,
    },
    #[cfg(not(feature = "agent"))]
    #[command(hide = true, disable_help_flag = true)]
    Agent(Disabled),
    /// Flow logs: observed traffic replayed against the policies and a proposed change.
    Flows {
        #[command(subcommand)]
        cmd: FlowsCmd,
    },
    /// Policy assertion tests for CI: expected flows (by pod, selector or IP) checked against the policies.
    Test {
        #[arg(short = 'f', long = "filename", required = true, help = FILES_HELP)]
        files: Vec<String>,
        /// The assertions file (YAML or JSON).
        assertions: String,
        #[arg(
            short = 'o',
            long,
            value_enum,
            default_value = "text",
            help = "Report format: text, junit (JUnit XML), or json"
        )]
        output: assert_cmd::AssertFormat,
    },
    /// Serve the engine over HTTP: JSON API (OpenAPI at /api/v1/openapi.json), /healthz, Prometheus /metrics.
    #[cfg(feature = "server")]
    Serve {
        /// Manifests: files or directories (recursive: *.yaml, *.yml, *.json; not stdin). Repeatable.
        #[arg(short = 'f', long = "filename")]
        files: Vec<String>,
        /// Without -f: list and watch this cluster, keeping the model current with every event.
        #[command(flatten)]
        cluster: ClusterArgs,
        /// Address to listen on: HOST:PORT, where HOST is an IP address ([::1] for IPv6) or a name such as
        /// localhost (resolved; an IPv4 address is preferred).
        #[arg(long, default_value = "127.0.0.1:8080", value_parser = parse_listen)]
        listen: std::net::SocketAddr,
        /// Largest request body accepted, in bytes (larger requests get 413).
        #[arg(long, default_value_t = serve::DEFAULT_BODY_LIMIT)]
        body_limit: usize,
        /// Reload when the manifests change (checked every second); a failed reload keeps the old model.
        #[arg(long)]
        watch: bool,
        /// Settings file for /api/v1/lint (default: .netpol.yaml in the current directory, if any).
        #[arg(long)]
        config: Option<String>,
        #[command(flatten)]
        limits: LimitsArgs,
    },
    #[cfg(not(feature = "server"))]
    #[command(hide = true, disable_help_flag = true)]
    Serve(Disabled),
    /// The flows of the cluster on which the CNIs (generic, cilium, calico) answer differently, with the reason:
    /// pod to pod per class, and from each node's addresses to pods. Exit 0 if none, 1 if some (a portability
    /// check; --cni does not change it).
    CniDiff {
        #[arg(short = 'f', long = "filename", help = FILES_HELP)]
        files: Vec<String>,
        #[command(flatten)]
        cluster: ClusterArgs,
        #[arg(short = 'o', long, value_enum, default_value = "table", help = OUTPUT_TABLE_JSON)]
        output: TableOrJson,
    },
    /// Which policies select each pod, and whether it is isolated per direction.
    Describe {
        #[arg(short = 'f', long = "filename", help = FILES_HELP)]
        files: Vec<String>,
        #[command(flatten)]
        cluster: ClusterArgs,
        /// namespace/pod (default: every pod, or every pod of -n).
        pod: Option<String>,
        /// Only pods of this namespace; the namespace of a POD given without one.
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        #[arg(short = 'o', long, value_enum, default_value = "table", help = OUTPUT_TABLE_JSON)]
        output: TableOrJson,
    },
}

/// `serve`'s timeouts and bound on concurrent expensive requests ([`serve::Limits`]).
#[cfg(feature = "server")]
#[derive(clap::Args)]
struct LimitsArgs {
    /// Time a client has to send a complete request head (request line and headers), counted from when the
    /// connection opens or its previous answer was sent, so it is also the keep-alive idle timeout; then the
    /// connection is closed.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = serve::parse_duration)]
    header_timeout: std::time::Duration,
    /// Time a client has to send a complete request body once the head is read; a slower one gets 408 and the
    /// connection is closed.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = serve::parse_duration)]
    body_timeout: std::time::Duration,
    /// Expensive requests (what-if, graph what-if, flow replay, query with explain) computed at once; more get
    /// 503 with `Retry-After` [default: the number of cores].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    max_expensive: Option<u32>,
}

#[cfg(feature = "server")]
impl From<LimitsArgs> for serve::Limits {
    fn from(a: LimitsArgs) -> serve::Limits {
        serve::Limits { header_timeout: a.header_timeout, body_timeout: a.body_timeout, max_expensive: a.max_expensive }
    }
}

/// `--listen`: `HOST:PORT` with an IP address or a host name. A name is resolved, and the first IPv4 address it
/// has is used (else the first address): `localhost` is 127.0.0.1, which is what clients try first.
#[cfg(feature = "server")]
fn parse_listen(s: &str) -> Result<std::net::SocketAddr, String> {
    use std::net::ToSocketAddrs;
    if let Ok(a) = s.parse() {
        return Ok(a);
    }
    let usage = "expected HOST:PORT, e.g. 127.0.0.1:8080, localhost:8080, [::1]:8080 or 0.0.0.0:8080";
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(format!("`{s}` has no port: {usage}"));
    };
    if port.parse::<u16>().is_err() {
        return Err(format!("invalid port `{port}` in `{s}`: {usage}"));
    }
    if host.is_empty() {
        return Err(format!("`{s}` has no host: {usage}"));
    }
    let addrs: Vec<std::net::SocketAddr> =
        s.to_socket_addrs().map_err(|e| format!("cannot resolve host `{host}`: {e}"))?.collect();
    addrs.iter().find(|a| a.is_ipv4()).or(addrs.first()).copied().ok_or_else(|| format!("host `{host}` has no address"))
}

fn init_tracing(verbose: u8) {
    // kube-client logs every failed request at error level; netpol reports those errors itself.
    let default = match verbose {
        0 => "warn,kube_client::client::builder=off",
        1 => "info,kube_client::client::builder=off",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(style::color_enabled(std::io::stderr().is_terminal()))
        .try_init();
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // `--kubeconfig` typed on the command line, as opposed to taken from $KUBECONFIG.
    let kubeconfig_on_cli = matches.subcommand().is_some_and(|(_, m)| {
        m.try_contains_id("kubeconfig").is_ok() && m.value_source("kubeconfig") == Some(ValueSource::CommandLine)
    });
    init_tracing(cli.verbose);
    match run(cli, kubeconfig_on_cli) {
        Ok(code) => code,
        // The reader of stdout went away (`netpol explain ... | head`): not an error of ours.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn load(files: &[String], strict: bool) -> anyhow::Result<Result<input::Input, ExitCode>> {
    let inp = input::engine(files)?;
    if inp.invalid > 0 {
        if strict {
            eprintln!("error: {} invalid object(s) in the input (--strict)", inp.invalid);
            return Ok(Err(ExitCode::from(2)));
        }
        eprintln!("warning: {} invalid object(s) were skipped; the answers below ignore them", inp.invalid);
    }
    Ok(Ok(inp))
}

/// Lists the cluster and loads it like manifests: diagnostics, `--strict`, and on stderr which server and
/// resourceVersions the answers come from.
#[cfg(feature = "kube")]
fn load_cluster(source: &live::Source, strict: bool) -> anyhow::Result<Result<input::Input, ExitCode>> {
    let (loaded, from) = live::snapshot_blocking(source)?;
    for d in &loaded.diagnostics {
        eprintln!("{d}");
    }
    let invalid = input::invalid_objects(&loaded.diagnostics);
    eprintln!("netpol: {from}");
    if invalid > 0 {
        if strict {
            eprintln!("error: {invalid} invalid object(s) in the cluster (--strict)");
            return Ok(Err(ExitCode::from(2)));
        }
        eprintln!("warning: {invalid} invalid object(s) were skipped; the answers below ignore them");
    }
    let t = std::time::Instant::now();
    let engine = netpol_core::compile::Engine::with_cni(loaded.cluster, netpol_input::cni());
    tracing::info!(elapsed = ?t.elapsed(), stats = ?engine.stats(), "compiled");
    Ok(Ok(input::Input { engine, invalid }))
}

/// [`load`] or [`load_cluster`].
fn load_from(inputs: &Inputs, strict: bool) -> anyhow::Result<Result<input::Input, ExitCode>> {
    match inputs {
        Inputs::Files(files) => load(files, strict),
        #[cfg(feature = "kube")]
        Inputs::Cluster(source) => load_cluster(source, strict),
    }
}

/// `--once`'s exit code: 1 (with the reason on stderr) when traffic between the node's pods bypasses netfilter,
/// so that what was programmed does not enforce all of the node's traffic.
#[cfg(feature = "agent")]
fn agent_bypass_code(p: &netpol_agent::Programmer) -> ExitCode {
    let reason = p.bypass().or_else(|| p.check_bridges());
    match reason {
        Some(r) => {
            eprintln!("error: programmed, but not enforcing same-node pod traffic: {r}");
            ExitCode::from(1)
        }
        None => ExitCode::SUCCESS,
    }
}

/// The manifest files of `-f` paths with their modification times and sizes: what changes when one is edited.
#[cfg(feature = "agent")]
fn files_fingerprint(files: &[String]) -> Vec<(std::path::PathBuf, Option<std::time::SystemTime>, u64)> {
    let listed = input::manifest_files(files).map(|m| m.files).unwrap_or_default();
    listed
        .into_iter()
        .map(|p| {
            let meta = std::fs::metadata(&p).ok();
            let modified = meta.as_ref().and_then(|m| m.modified().ok());
            (p, modified, meta.map_or(0, |m| m.len()))
        })
        .collect()
}

fn run(cli: Cli, kubeconfig_on_cli: bool) -> anyhow::Result<ExitCode> {
    let strict = cli.strict;
    // The agent enforces, so its answers are its own reading (`netpol`) unless --cni says otherwise.
    #[cfg(feature = "agent")]
    let agent_default = matches!(cli.cmd, Cmd::Agent { .. }).then_some(netpol_core::cni::Cni::Netpol);
    #[cfg(not(feature = "agent"))]
    let agent_default = None;
    netpol_input::set_cni(cli.cni.cni().or(agent_default));
    match cli.cmd {
        Cmd::Query { files, cluster, flows, explain, namespace } => {
            if flows.is_none() && files.iter().any(|f| f == "-") {
                anyhow::bail!(
                    "stdin cannot carry both the manifests (`-f -`) and the flows: give the flows with --flows FILE, \
                     or the manifests as files"
                );
            }
            let inputs = inputs(files, cluster, kubeconfig_on_cli)?;
            let inp = match load_from(&inputs, strict)? {
                Ok(i) => i,
                Err(code) => return Ok(code),
            };
            // Each answer line stays the flow's own object: the CNI is in `--explain`'s explanations, and logged.
            tracing::info!("{}", cni_header(&inp.engine));
            // The staged view, compiled once for every flow: only explanations read it.
            let staged = if explain { netpol_core::staged::staged_engine(&inp.engine) } else { None };
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            let errors = match flows {
                Some(path) => {
                    let f = std::fs::File::open(&path).map_err(|e| anyhow::anyhow!("cannot read `{path}`: {e}"))?;
                    let mut r = std::io::BufReader::with_capacity(1 << 16, f);
                    query::run_with_staged(&inp.engine, staged.as_ref(), &mut r, &mut out, explain, &namespace)?
                }
                None => {
                    let stdin = std::io::stdin();
                    let mut r = stdin.lock();
                    query::run_with_staged(&inp.engine, staged.as_ref(), &mut r, &mut out, explain, &namespace)?
                }
            };
            if errors > 0 {
                eprintln!("{errors} flow line(s) could not be answered (see their \"error\" field)");
                return Ok(ExitCode::from(1));
            }
            Ok(ExitCode::SUCCESS)
        }
        #[cfg(not(feature = "agent"))]
        Cmd::Agent(_) => Err(missing_feature("`netpol agent`", "agent")),
        #[cfg(feature = "agent")]
        Cmd::Agent {
            node,
            files,
            cluster,
            mode,
            metrics_listen,
            once,
            pod_interfaces,
            flow_log,
            flow_log_format,
            self_check,
            self_check_sample,
            netns,
            batch_window_ms,
        } => {
            use std::sync::Arc;
            let mode = match mode {
                AgentMode::Enforce => netpol_agent::Mode::Enforce,
                AgentMode::Audit => netpol_agent::Mode::Audit,
            };
            let programmer = Arc::new(
                netpol_agent::Programmer::new(&node, mode, Box::new(netpol_nft::apply::System), netns.clone())
                    .with_session()
                    .with_pod_interfaces(pod_interfaces)
                    .with_batch_window(std::time::Duration::from_millis(batch_window_ms)),
            );
            // The flow log and the self-check: traced by the kernel, read on a thread of their own.
            let _tracer = if (flow_log.is_some() || self_check) && !once {
                let out: Box<dyn std::io::Write + Send> = match flow_log.as_deref() {
                    Some("-") => Box::new(std::io::stdout()),
                    Some(path) => Box::new(
                        std::fs::OpenOptions::new()
                            .create(true)
                            .append(true)
                            .open(path)
                            .map_err(|e| anyhow::anyhow!("cannot write the flow log `{path}`: {e}"))?,
                    ),
                    None => Box::new(std::io::sink()),
                };
                let format = match flow_log_format {
                    FlowLogFormat::Netpol => netpol_agent::flows::Format::Netpol,
                    FlowLogFormat::Hubble => netpol_agent::flows::Format::Hubble,
                };
                let sample = self_check.then_some(self_check_sample);
                Some(netpol_agent::flows::start(programmer.clone(), netns.clone(), format, sample, out)?)
            } else {
                None
            };
            // Only the flow log and the self-check read the model once programmed.
            programmer.keep_model(_tracer.is_some());
            match inputs(files, cluster, kubeconfig_on_cli)? {
                Inputs::Cluster(source) if once => {
                    let (loaded, from) = live::snapshot_blocking(&source)?;
                    eprintln!("netpol: {from}");
                    let engine = netpol_core::compile::Engine::with_cni(loaded.cluster, netpol_input::cni());
                    programmer.program(&engine)?;
                    Ok(agent_bypass_code(&programmer))
                }
                Inputs::Cluster(source) => {
                    netpol_agent::run_live_blocking(&source, programmer, netpol_input::cni(), metrics_listen)?;
                    Ok(ExitCode::SUCCESS)
                }
                Inputs::Files(files) => {
                    if files.iter().any(|f| f == "-") && !once {
                        anyhow::bail!("stdin (`-f -`) can be read once: give files, or --once");
                    }
                    if let Some(addr) = metrics_listen {
                        netpol_agent::spawn_metrics(addr, programmer.clone(), None)?;
                    }
                    let mut seen = None;
                    loop {
                        let now = if files.iter().any(|f| f == "-") { None } else { Some(files_fingerprint(&files)) };
                        programmer.set_bypass(programmer.check_bridges());
                        if seen.is_none() || now != seen {
                            // A failed read keeps the ruleset in place, as a failed list does.
                            match load(&files, strict)? {
                                Ok(inp) => {
                                    if let Err(e) = programmer.program_shared(Arc::new(inp.engine), None) {
                                        if once {
                                            return Err(e.into());
                                        }
                                        eprintln!("error: cannot program the ruleset: {e}");
                                    }
                                }
                                Err(code) if once => return Ok(code),
                                Err(_) => {}
                            }
                            seen = now.or(Some(Vec::new()));
                        }
                        if once {
                            return Ok(agent_bypass_code(&programmer));
                        }
                        std::thread::sleep(std::time::Duration::from_secs(1));
                    }
                }
            }
        }
        Cmd::Generate {
            files,
            cluster,
            from_flows,
            namespace,
            dialect,
            output_dir,
            report,
            output,
            allow_observed_denials,
            flow_format,
            prove,
            prefix,
        } => {
            #[cfg(not(feature = "lab"))]
            if prove {
                return Err(missing_feature("--prove", "lab"));
            }
            #[cfg(feature = "lab")]
            if prove {
                lab_cmd::check_privileges()?;
            }
            let stdin_logs = from_flows.iter().filter(|l| *l == "-").count();
            if stdin_logs > 1 || (stdin_logs == 1 && files.iter().any(|f| f == "-")) {
                anyhow::bail!("stdin (`-`) can be read only once: give the manifests or the flow logs as files");
            }
            let inputs = inputs(files, cluster, kubeconfig_on_cli)?;
            let inp = match load_from(&inputs, strict)? {
                Ok(i) => i,
                Err(code) => return Ok(code),
            };
            let opts =
                netpol_input::generate::Options { dialect: dialect.dialect(), namespace, allow_observed_denials };
            let dest = match &output_dir {
                Some(d) => flows_cmd::Destination::Dir(d),
                None => flows_cmd::Destination::Stdout,
            };
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            let mut report_out: Box<dyn std::io::Write> = match &report {
                Some(p) => Box::new(
                    std::fs::File::create(p).map_err(|e| anyhow::anyhow!("cannot write `{}`: {e}", p.display()))?,
                ),
                None => Box::new(std::io::stderr()),
            };
            #[cfg(feature = "lab")]
            let prover = |cluster: &netpol_core::model::Cluster, probes: &str| -> anyhow::Result<flows_cmd::Proof> {
                let mut lines = Vec::new();
                lab_cmd::connectivity_test_input(
                    cluster,
                    Some(&mut probes.as_bytes()),
                    &prefix,
                    None,
                    false,
                    std::time::Duration::from_millis(1000),
                    &mut lines,
                )?;
                Ok(flows_cmd::proof_of(&String::from_utf8_lossy(&lines)))
            };
            #[cfg(feature = "lab")]
            let prove: Option<flows_cmd::Prover> = if prove { Some(&prover) } else { None };
            #[cfg(not(feature = "lab"))]
            let prove: Option<flows_cmd::Prover> = {
                let _ = &prefix;
                None
            };
            let code = flows_cmd::generate(
                &inp.engine,
                &from_flows,
                flow_format.map(flows_cmd::FormatArg::format),
                &opts,
                dest,
                output == TextOrJson::Json,
                prove,
                &mut report_out,
                &mut out,
            )?;
            Ok(ExitCode::from(code))
        }
        Cmd::Flows {
            cmd: FlowsCmd::Replay { files, cluster, against, git, flow_format, output, explain, fail_on_breakage, logs },
        } => {
            let stdin_logs = logs.iter().filter(|l| *l == "-").count();
            if stdin_logs > 1 || (stdin_logs == 1 && (files.iter().chain(&against).any(|f| f == "-"))) {
                anyhow::bail!("stdin (`-`) can be read only once: give the manifests or the flow logs as files");
            }
            let inputs = inputs(files, cluster, kubeconfig_on_cli)?;
            let inp = match load_from(&inputs, strict)? {
                Ok(i) => i,
                Err(code) => return Ok(code),
            };
            let proposal = match git.as_slice() {
                [old, new, path] => flows_cmd::Proposal::Git { old, new, path },
                _ if !against.is_empty() => flows_cmd::Proposal::Against(&against),
                _ => flows_cmd::Proposal::None,
            };
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            let code = flows_cmd::run(
                &inp.engine,
                &proposal,
                &logs,
                flow_format.map(flows_cmd::FormatArg::format),
                output,
                explain,
                fail_on_breakage,
                &mut out,
            )?;
            Ok(ExitCode::from(code))
        }
        Cmd::Explain { files, cluster, src, dst, port, namespace, dst_fqdn, request, output } => {
            let inputs = inputs(files, cluster, kubeconfig_on_cli)?;
            let inp = match load_from(&inputs, strict)? {
                Ok(i) => i,
                Err(code) => return Ok(code),
            };
            let r = query::Resolver::new(&inp.engine, &namespace);
            let s = r.endpoint(&src).map_err(|e| anyhow::anyhow!("source: {e}"))?;
            let d = r.endpoint(&dst).map_err(|e| anyhow::anyhow!("destination: {e}"))?;
            let (port, proto) = query::parse_port_proto(&port).map_err(anyhow::Error::msg)?;
            let name = dst_fqdn.map(|n| query::parse_fqdn(&n)).transpose().map_err(anyhow::Error::msg)?;
            let req = request.request(proto)?;
            let info = netpol_core::compile::FlowInfo { dst_name: name.as_deref(), request: req.as_ref() };
            let ex = match netpol_core::staged::staged_engine(&inp.engine) {
                None => inp.engine.explain_flow(&s, &d, info, proto, port),
                // The staged view: the same pods (so the same endpoints), the staged policies enforced.
                Some(staged) => {
                    netpol_core::staged::explain_flow_with_staged(&inp.engine, &staged, &s, &d, info, proto, port)
                }
            };
            // Whether another CNI would answer otherwise (their engines compiled for this question only).
            let dep = netpol_core::cni::ByCni::new(&inp.engine).dependence(&s, &d, info, proto, port);
            match output {
                TextOrJson::Json => {
                    let mut v = serde_json::to_value(&ex)?;
                    if let serde_json::Value::Object(m) = &mut v {
                        m.insert("cni".into(), netpol_input::cni_json(&inp.engine));
                        if let Some(d) = &dep {
                            m.insert("cni_dependence".into(), serde_json::to_value(d)?);
                        }
                    }
                    writeln!(std::io::stdout().lock(), "{}", serde_json::to_string_pretty(&v)?)?
                }
                TextOrJson::Text => {
                    let mut text = format!("{}\n{}", cni_header(&inp.engine), ex.render());
                    if let Some(d) = &dep {
                        text.push_str(&format!("note: {}\n", d.render()));
                    }
                    write!(std::io::stdout().lock(), "{}", style::paint_explanation(&text))?
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Matrix { files, cluster, ports, namespace, output } => {
            let inputs = inputs(files, cluster, kubeconfig_on_cli)?;
            let inp = match load_from(&inputs, strict)? {
                Ok(i) => i,
                Err(code) => return Ok(code),
            };
            let ports = ports
                .iter()
                .map(|p| query::parse_port_proto(p))
                .collect::<Result<Vec<_>, _>>()
                .map_err(anyhow::Error::msg)?;
            if let Some(c) = inp.engine.matrix_caveat() {
                eprintln!("warning: {c}");
            }
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            if matches!(output, MatrixFormat::Table | MatrixFormat::Summary) {
                writeln!(out, "{}", cni_header(&inp.engine))?;
            }
            matrix_out::run(&inp.engine, &ports, namespace.as_deref(), output, &mut out)?;
            Ok(ExitCode::SUCCESS)
        }
        #[cfg(feature = "lab")]
        Cmd::Nft { action: Some(NftAction::Stats { prefix, output }), .. } => {
            lab_cmd::check_privileges()?;
            let stdout = std::io::stdout();
            lab_cmd::stats(&prefix, output == TableOrJson::Json, &mut stdout.lock())?;
            Ok(ExitCode::SUCCESS)
        }
        #[cfg(not(feature = "lab"))]
        Cmd::Nft { action: Some(NftAction::Stats(_)), .. } => Err(missing_feature("`netpol nft stats`", "lab")),
        #[cfg(not(feature = "lab"))]
        Cmd::Lab(_) => Err(missing_feature("`netpol lab`", "lab")),
        #[cfg(not(feature = "lab"))]
        Cmd::Observe(_) => Err(missing_feature("`netpol observe`", "lab")),
        #[cfg(not(feature = "lab"))]
        Cmd::ConnectivityTest(_) => Err(missing_feature("`netpol connectivity-test`", "lab")),
        #[cfg(feature = "lab")]
        Cmd::Lab { action } => {
            lab_cmd::check_privileges()?;
            match action {
                #[cfg(feature = "agent")]
                LabAction::Api { files, kubeconfig_out } => {
                    lab_cmd::serve_api(&files, &kubeconfig_out)?;
                }
                LabAction::Up {
                    files,
                    prefix,
                    nodes,
                    #[cfg(feature = "agent")]
                    agent,
                    #[cfg(feature = "agent")]
                    kubeconfig_out,
                } => {
                    let inp = match load(&files, strict)? {
                        Ok(i) => i,
                        Err(code) => return Ok(code),
                    };
                    let nodes = nodes.map(usize::from);
                    let (lab, _) = lab_cmd::up_nodes(inp.engine.cluster(), &prefix, nodes, Vec::new())?;
                    #[cfg(feature = "agent")]
                    if agent {
                        let started = match &kubeconfig_out {
                            Some(k) => lab_cmd::start_live_agents(inp.engine.cluster(), &lab, &files, k)?,
                            None => lab_cmd::start_agents(inp.engine.cluster(), &lab, &files)?,
                        };
                        for s in started {
                            let pid = s.pid;
                            match s.metrics {
                                _ if s.name == "api" => println!("API server started (pid {pid})"),
                                Some(m) => {
                                    println!("agent of node {} started (pid {pid}, metrics http://{m}/metrics)", s.name)
                                }
                                None => println!("agent of node {} started (pid {pid})", s.name),
                            }
                        }
                    }
                    let pods = lab.pods().count();
                    match lab.fabric_netns() {
                        None => {
                            println!("lab `{prefix}` is up: node namespace {}, {pods} pod namespaces", lab.node_netns())
                        }
                        Some(fabric) => {
                            let names: Vec<&str> = lab.nodes().iter().map(|n| n.netns.as_str()).collect();
                            println!(
                                "lab `{prefix}` is up: {} node namespaces ({}), fabric {fabric}, {pods} pod namespaces",
                                names.len(),
                                names.join(", ")
                            );
                        }
                    }
                }
                LabAction::Apply { files, prefix } => {
                    let inp = match load(&files, strict)? {
                        Ok(i) => i,
                        Err(code) => return Ok(code),
                    };
                    let how = lab_cmd::apply_changes(inp.engine.cluster(), &prefix)?;
                    println!(
                        "lab `{prefix}` updated ({})",
                        match how {
                            lab_cmd::Load::Incremental => "incremental ruleset update, one transaction",
                            lab_cmd::Load::Full => "ruleset replaced, one transaction",
                            lab_cmd::Load::Agents => "rulesets left to the lab's agents",
                        }
                    );
                }
                LabAction::Down { prefix } => {
                    let n = lab_cmd::down(&prefix)?;
                    println!("lab `{prefix}`: removed {n} namespace(s)");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        #[cfg(feature = "lab")]
        Cmd::Observe { prefix, files, count, seconds } => {
            lab_cmd::check_privileges()?;
            let engine = if files.is_empty() {
                None
            } else {
                match load(&files, strict)? {
                    Ok(i) => Some(lab_cmd::prepare(i.engine.cluster()).engine),
                    Err(code) => return Ok(code),
                }
            };
            let stdout = std::io::stdout();
            lab_cmd::observe(
                &prefix,
                engine.as_ref(),
                count,
                seconds.map(std::time::Duration::from_secs),
                &mut stdout.lock(),
            )?;
            Ok(ExitCode::SUCCESS)
        }
        #[cfg(feature = "lab")]
        Cmd::ConnectivityTest { files, flows, prefix, nodes, keep, timeout_ms } => {
            lab_cmd::check_privileges()?;
            let inp = match load(&files, strict)? {
                Ok(i) => i,
                Err(code) => return Ok(code),
            };
            let stdout = std::io::stdout();
            let code = lab_cmd::connectivity_test(
                inp.engine.cluster(),
                flows.as_deref(),
                &prefix,
                nodes.map(usize::from),
                keep,
                std::time::Duration::from_millis(timeout_ms),
                &mut stdout.lock(),
            )?;
            Ok(ExitCode::from(code))
        }
        Cmd::Nft { action: None, files, output } => {
            if files.is_empty() {
                anyhow::bail!("give the manifests with -f (or use `netpol nft stats`)");
            }
            let inp = match load(&files, strict)? {
                Ok(i) => i,
                Err(code) => return Ok(code),
            };
            let t = std::time::Instant::now();
            let rs = netpol_nft::ruleset::generate(&inp.engine);
            let (rules, elements) = rs.size();
            tracing::info!(elapsed = ?t.elapsed(), rules, elements, sets = rs.sets.len(), "ruleset generated");
            match output {
                // The CNI as a comment (`nft -f` skips it); libnftables JSON has no place for it.
                NftFormat::Nft => write!(std::io::stdout().lock(), "# {}\n{}", cni_header(&inp.engine), rs.to_nft())?,
                NftFormat::Json => {
                    writeln!(std::io::stdout().lock(), "{}", serde_json::to_string_pretty(&rs.to_json())?)?
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Lint { files, cluster, output, fail_on, disable, config, list } => {
            let stdout = std::io::stdout();
            if list {
                lint_cmd::list(&mut stdout.lock())?;
                return Ok(ExitCode::SUCCESS);
            }
            let inputs =
                inputs(files, cluster, kubeconfig_on_cli).map_err(|e| anyhow::anyhow!("{e} (or use --list)"))?;
            let mut cfg = lint_cmd::load_config(config.as_deref())?;
            let mut disable = disable;
            lint_cmd::check_rules(&mut disable, "--disable")?;
            cfg.disable.extend(disable);
            let inp = match load_from(&inputs, strict)? {
                Ok(i) => i,
                Err(code) => return Ok(code),
            };
            let code = lint_cmd::run(&inp.engine, &cfg, output, fail_on, &mut stdout.lock())?;
            Ok(ExitCode::from(code))
        }
        Cmd::Diff { old, new, git, staged, cluster, namespace, output, fail_on_new_allows } => {
            let git = match git.as_slice() {
                [a, b, c] => Some((a.as_str(), b.as_str(), c.as_str())),
                _ => None,
            };
            let stdout = std::io::stdout();
            let ns = namespace.as_deref();
            let cluster_flags = kubeconfig_on_cli || cluster.context.is_some() || cluster.in_cluster;
            if !staged && cluster_flags {
                anyhow::bail!("a live cluster (--kubeconfig, --context, --in-cluster) is compared only with --staged");
            }
            let code = if staged {
                match inputs(old, cluster, kubeconfig_on_cli)? {
                    Inputs::Files(files) => {
                        diff_cmd::run_staged(&files, ns, output, fail_on_new_allows, &mut stdout.lock())?
                    }
                    #[cfg(feature = "kube")]
                    Inputs::Cluster(source) => {
                        let (loaded, from) = live::snapshot_blocking(&source)?;
                        for d in &loaded.diagnostics {
                            eprintln!("{d}");
                        }
                        eprintln!("netpol: {from}");
                        let invalid = input::invalid_objects(&loaded.diagnostics);
                        if invalid > 0 {
                            if strict {
                                eprintln!("error: {invalid} invalid object(s) in the cluster (--strict)");
                                return Ok(ExitCode::from(2));
                            }
                            eprintln!("warning: {invalid} invalid object(s) were skipped");
                        }
                        let out = &mut stdout.lock();
                        diff_cmd::run_staged_on(loaded.cluster, "the cluster", ns, output, fail_on_new_allows, out)?
                    }
                }
            } else {
                diff_cmd::run(&old, &new, git, ns, output, fail_on_new_allows, &mut stdout.lock())?
            };
            Ok(ExitCode::from(code))
        }
        Cmd::Test { files, assertions, output } => {
            if assertions == "-" && files.iter().any(|f| f == "-") {
                anyhow::bail!(
                    "stdin cannot carry both the manifests (`-f -`) and the assertions (`-`): give one of them as a file"
                );
            }
            let inp = match load(&files, strict)? {
                Ok(i) => i,
                Err(code) => return Ok(code),
            };
            let stdout = std::io::stdout();
            let code = assert_cmd::run(&inp.engine, &assertions, output, &mut stdout.lock())?;
            Ok(ExitCode::from(code))
        }
        #[cfg(feature = "server")]
        Cmd::Serve { files, cluster, listen, body_limit, watch, config, limits } => {
            let lint_config = lint_cmd::load_config(config.as_deref())?;
            let mut opts = serve::ServeOptions::new(listen);
            match inputs(files, cluster, kubeconfig_on_cli)? {
                Inputs::Files(files) => opts.files = files,
                #[cfg(feature = "kube")]
                Inputs::Cluster(_) if watch => {
                    anyhow::bail!("--watch reloads -f manifests; a cluster is always watched")
                }
                #[cfg(feature = "kube")]
                Inputs::Cluster(source) => opts.cluster = Some(source),
            }
            opts.body_limit = body_limit;
            opts.watch = watch;
            opts.lint_config = lint_config;
            opts.limits = limits.into();
            serve::serve_blocking(opts)?;
            Ok(ExitCode::SUCCESS)
        }
        #[cfg(not(feature = "server"))]
        Cmd::Serve(_) => Err(missing_feature("`netpol serve`", "server")),
        Cmd::CniDiff { files, cluster, output } => {
            let inputs = inputs(files, cluster, kubeconfig_on_cli)?;
            let inp = match load_from(&inputs, strict)? {
                Ok(i) => i,
                Err(code) => return Ok(code),
            };
            let rows = netpol_core::cni::disagreements(&inp.engine).map_err(anyhow::Error::msg)?;
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            match output {
                TableOrJson::Json => {
                    let v = serde_json::json!({"cni": netpol_input::cni_json(&inp.engine), "disagreements": rows});
                    writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
                }
                TableOrJson::Table => {
                    writeln!(out, "{}", cni_header(&inp.engine))?;
                    if rows.is_empty() {
                        writeln!(out, "generic, cilium and calico agree on every flow of the cluster")?;
                    }
                    for r in &rows {
                        writeln!(out, "{} -> {} ({} pair(s))", r.src, r.dst, r.pairs)?;
                        for (cni, ports) in &r.allowed {
                            writeln!(out, "  {cni:<8} {ports}")?;
                        }
                        writeln!(out, "  why: {}", r.reason)?;
                    }
                }
            }
            out.flush()?;
            Ok(if rows.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        Cmd::Describe { files, cluster, pod, namespace, output } => {
            let inputs = inputs(files, cluster, kubeconfig_on_cli)?;
            let inp = match load_from(&inputs, strict)? {
                Ok(i) => i,
                Err(code) => return Ok(code),
            };
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            describe::run(&inp.engine, pod.as_deref(), namespace.as_deref(), output, &mut out)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
