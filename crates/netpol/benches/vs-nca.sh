#!/usr/bin/env bash
# netpol vs network-config-analyzer (NCA): end-to-end wall time of the full connectivity map of one cluster,
# both tools timed in the same run, interleaved.
#
#   crates/netpol/benches/vs-nca.sh [MANIFESTS.yaml]
#
# Without an argument the 1k-pod synthetic cluster (`netpol-synth --preset 1k`) is generated. Timed commands:
#   netpol matrix -o summary -f FILE
#   nca --connectivity -r FILE -o $NCA_FORMAT        (default txt, NCA's default connectivity-map output)
# Each tool is run once untimed first (warm-up; NCA's run is also shown, so one can see what it read and
# answered), then the timed runs alternate. Printed: min/median/max of wall and CPU (user+sys) time per tool, the
# ratio of the medians, and the machine.
#
# Environment:
#   NETPOL_BIN     netpol binary to time (default: `cargo build --release -p netpol`, then $target/release/netpol)
#   NETPOL_RUNS    timed netpol runs (default 10)
#   NCA_RUNS       timed NCA runs (default 3; one takes tens of seconds on 1k pods)
#   NCA_FORMAT     NCA output format (default txt; txt_no_fw_rules lists every pair instead of firewall rules)
#   VS_NCA_CHECK=1 also compare the two answers pod pair by pod pair (one more NCA run, and `netpol matrix -o csv`)
#
# NCA 2.1.0 reads every object of the 1k cluster (400 policies, 1000 pods, 102 namespaces: printed below) and both
# tools compute the full map over all ports and protocols (TCP, UDP, SCTP; NCA also maps IP ranges). With
# VS_NCA_CHECK=1 the answers agree on all but ~8,200 of the 999,000 ordered pod pairs, for three reasons:
#   - ipBlock peers: netpol matches pod IPs against them (10.0.0.0/8 contains the synthetic pod IPs), NCA never
#     matches a pod with an ipBlock (5,490 pairs, TCP 30000-32767);
#   - NCA bug: in a peer with a namespaceSelector, a podSelector `Exists`/`DoesNotExist` expression only matches
#     pods of the policy's own namespace (K8sPolicyYamlParser calls get_peers_with_key(self.namespace, ...))
#     (2,108 pairs, TCP 8080);
#   - hostNetwork pods: netpol applies no policy to them and no selector matches them; NCA treats them as
#     ordinary pods (568 pairs).
#
# Everything is written under ${CARGO_TARGET_DIR:-target}: the venv with NCA (nca-venv/, created on the first run:
# the only use of the network, `pip install network-config-analyzer==$NCA_VERSION` from PyPI) and the cluster and
# outputs (vs-nca/).
set -euo pipefail

NCA_VERSION=2.1.0
NETPOL_RUNS=${NETPOL_RUNS:-10}
NCA_RUNS=${NCA_RUNS:-3}
NCA_FORMAT=${NCA_FORMAT:-txt}
VS_NCA_CHECK=${VS_NCA_CHECK:-0}

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
cd "$repo"
target=${CARGO_TARGET_DIR:-target}
mkdir -p "$target"
target=$(cd "$target" && pwd)
work=$target/vs-nca
mkdir -p "$work"

# 1. NCA, pinned, in a venv under the target dir.
venv=$target/nca-venv
if ! [ -x "$venv/bin/nca" ] || [ "$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("network-config-analyzer"))' 2>/dev/null)" != "$NCA_VERSION" ]; then
    echo "vs-nca: installing network-config-analyzer==$NCA_VERSION into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --no-cache-dir --disable-pip-version-check "network-config-analyzer==$NCA_VERSION"
fi
nca=$venv/bin/nca

# 2. The cluster.
if [ $# -ge 1 ]; then
    file=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
else
    file=$work/synth-1k.yaml
    cargo run --release -q -p netpol-synth -- --preset 1k > "$file.tmp"
    mv "$file.tmp" "$file"
fi

# 3. netpol.
if [ -z "${NETPOL_BIN:-}" ]; then
    cargo build --release -q -p netpol
    NETPOL_BIN=$target/release/netpol
fi

# 4. What each tool reads and answers, once (also the warm-up runs).
echo "vs-nca: input $file ($(wc -c < "$file") bytes; $(grep -c '^kind: Namespace$' "$file" || true) Namespaces, $(grep -c '^kind: Pod$' "$file" || true) Pods, $(grep -c '^kind: NetworkPolicy$' "$file" || true) NetworkPolicies by grep)" >&2
echo "vs-nca: what NCA parsed (its own loader, NetworkConfig of the file):" >&2
"$venv/bin/python" - "$file" <<'EOF' 2>/dev/null | grep '^nca parsed' >&2
import sys
from nca.NetworkConfig.ResourcesHandler import ResourcesHandler
cfg = ResourcesHandler().get_network_config(None, None, None, [sys.argv[1]])
pc = cfg.peer_container
print(f"nca parsed: {len(cfg.policies_container.policies)} NetworkPolicies, "
      f"{len(pc.get_all_peers_group())} pods, {len(pc.namespaces)} namespaces")
EOF
nca_cmd=("$nca" --connectivity -r "$file" -o "$NCA_FORMAT")
netpol_cmd=("$NETPOL_BIN" matrix -o summary -f "$file")
"${nca_cmd[@]}" > "$work/nca.out" 2> "$work/nca.err"
# NCA prints its warnings to stdout, before the answer.
echo "vs-nca: NCA answer ($(wc -c < "$work/nca.out") bytes, $(grep -vc '^Warning' "$work/nca.out") lines besides $(grep -c '^Warning' "$work/nca.out") warning lines; $(grep -c 'Warning' "$work/nca.err" || true) warnings on stderr), first lines:" >&2
awk '!/^Warning/ && n++ < 5' "$work/nca.out" | cut -c1-200 >&2  # not head: SIGPIPE under pipefail
"${netpol_cmd[@]}" > "$work/netpol.out"
echo "vs-nca: netpol answer ($(wc -c < "$work/netpol.out") bytes), first lines:" >&2
head -n 4 "$work/netpol.out" >&2

# 5. Timed runs, interleaved: NCA_RUNS rounds, each some netpol runs then one NCA run.
python3 - "$NETPOL_RUNS" "$NCA_RUNS" "${#netpol_cmd[@]}" "${netpol_cmd[@]}" "${nca_cmd[@]}" <<'EOF'
import os, statistics, subprocess, sys, time

n_np, n_nca, k = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
np_cmd, nca_cmd = sys.argv[4:4 + k], sys.argv[4 + k:]

def run(cmd):
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"vs-nca: {cmd[0]} exited with {os.waitstatus_to_exitcode(status)}")
    return wall, ru.ru_utime + ru.ru_stime

res = {"netpol": [], "nca": []}
rounds = max(n_nca, 1)
for r in range(rounds):
    for _ in range(r * n_np // rounds, (r + 1) * n_np // rounds):
        res["netpol"].append(run(np_cmd))
    if r < n_nca:
        res["nca"].append(run(nca_cmd))

def ms(x):
    return f"{x * 1e3:,.1f} ms" if x < 1 else f"{x:,.2f} s"

med = {}
for name, runs in res.items():
    if not runs:
        continue
    for i, what in ((0, "wall"), (1, "cpu ")):
        xs = sorted(r[i] for r in runs)
        med[name, i] = statistics.median(xs)
        print(f"{name:6} {what} min {ms(xs[0]):>10}  median {ms(med[name, i]):>10}  max {ms(xs[-1]):>10}  ({len(xs)} runs)")
if ("nca", 0) in med:
    print(f"ratio of medians (nca / netpol): wall {med['nca', 0] / med['netpol', 0]:,.0f}x, "
          f"cpu {med['nca', 1] / med['netpol', 1]:,.0f}x")
EOF

echo "machine: $(nproc) cores, $(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), kernel $(uname -r); load average now $(cut -d' ' -f1-3 /proc/loadavg)"
echo "versions: $("$NETPOL_BIN" --version), network-config-analyzer $NCA_VERSION on $("$venv/bin/python" --version)"
echo "commands: ${netpol_cmd[*]}  |  nca --connectivity -r FILE -o $NCA_FORMAT"

# 6. Optional: the two answers pod pair by pod pair.
if [ "$VS_NCA_CHECK" = 1 ]; then
    "$nca" --connectivity -r "$file" -o txt_no_fw_rules > "$work/nca-pairs.out" 2> /dev/null
    "$NETPOL_BIN" matrix -o csv -f "$file" > "$work/netpol-pairs.csv"
    python3 - "$work/nca-pairs.out" "$work/netpol-pairs.csv" "$file" <<'EOF'
# Both answers as {protocol: merged port intervals} per ordered pair of distinct pods (pods only: NCA's
# lines for IP ranges are not compared); pairs that differ are grouped by what each side has more.
import collections, re, sys

ALL = {p: [(1, 65535)] for p in ("TCP", "UDP", "SCTP")}

def ranges(s):
    out = []
    for part in s.split(","):
        lo, _, hi = part.partition("-")
        out.append((int(lo), int(hi or lo)))
    return out

def merged(d):
    res = {}
    for proto, rs in d.items():
        out = []
        for lo, hi in sorted(rs):
            if out and lo <= out[-1][1] + 1:
                out[-1] = (out[-1][0], max(hi, out[-1][1]))
            else:
                out.append((lo, hi))
        if out:
            res[proto] = out
    return res

nca = collections.defaultdict(lambda: collections.defaultdict(list))
for line in open(sys.argv[1]):
    m = re.match(r"(\S+)\[Pod\] => (\S+)\[Pod\] : (.*)", line)
    if not m:
        continue
    src, dst, conns = m.groups()
    if src == dst:
        continue
    if conns.strip() == "All connections":
        for proto, rs in ALL.items():
            nca[src, dst][proto] += rs
        continue
    for part in re.findall(r"\{([^}]*)\}", conns):
        pm = re.match(r"protocols:([A-Z, ]+?)(?:,dst_ports:([0-9,-]+))?$", part)
        rs = ranges(pm.group(2)) if pm.group(2) else [(1, 65535)]
        for proto in pm.group(1).split(","):
            nca[src, dst][proto.strip()] += rs

netpol = {}
with open(sys.argv[2]) as f:
    next(f)
    for line in f:
        src, dst, allowed = line.rstrip("\n").split(",", 2)
        if src == dst or allowed == "none":
            continue
        d = collections.defaultdict(list)
        if allowed == "all":
            d.update({p: list(rs) for p, rs in ALL.items()})
        else:
            for part in allowed.split("; "):
                proto, _, ports = part.partition(" ")
                d[proto] += ranges(ports)
        netpol[src, dst] = d

def minus(a, b):
    # the port ranges of a that b lacks, roughly (by interval, enough to name the difference)
    return {p: [r for r in rs if r not in b.get(p, [])] for p, rs in a.items() if [r for r in rs if r not in b.get(p, [])]}

host = set()
doc = ""
for line in open(sys.argv[3]) :
    if line.startswith("---"):
        if "hostNetwork: true" in doc:
            ns = re.search(r"\n  namespace: (\S+)", doc); name = re.search(r"\n  name: (\S+)", doc)
            if ns and name:
                host.add(f"{ns.group(1)}/{name.group(1)}")
        doc = ""
    doc += line
if "hostNetwork: true" in doc:
    ns = re.search(r"\n  namespace: (\S+)", doc); name = re.search(r"\n  name: (\S+)", doc)
    if ns and name:
        host.add(f"{ns.group(1)}/{name.group(1)}")

same, groups = 0, collections.Counter()
for pair in set(nca) | set(netpol):
    a, b = merged(nca.get(pair, {})), merged(netpol.get(pair, {}))
    if a == b:
        same += 1
        continue
    tag = "a hostNetwork pod" if pair[0] in host or pair[1] in host else ""
    groups[tag, str(minus(b, a)), str(minus(a, b))] += 1
print(f"check: pairs of distinct pods with some connection: nca {len(nca)}, netpol {len(netpol)}; "
      f"same allowed ports {same}, different {sum(groups.values())}")
for (tag, more_np, more_nca), n in groups.most_common(10):
    print(f"check: {n:7} pairs{' with ' + tag if tag else ''}: only netpol allows {more_np or '-'}, only nca {more_nca or '-'}")
EOF
fi
