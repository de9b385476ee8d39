#!/usr/bin/env python3
"""Regenerates this directory from the upstream conformance suite of kubernetes-sigs/network-policy-api.

    python3 tests/conformance/network-policy-api/generate.py GIT_DIR

GIT_DIR is a clone (or bare mirror) of https://github.com/kubernetes-sigs/network-policy-api that has commit
UPSTREAM_COMMIT. Nothing here runs during `cargo test`: the generated files are committed, and this script is how
they were made (and how to redo them for a newer upstream commit; see README.md).

What is read from upstream, and how:
- conformance/base/manifests.yaml: the namespaces, and the pod templates of the StatefulSets (the Go template
  `{{ index .HostNetworkPorts N }}` replaced by 34345 + N, the suite's default). The pods are written as the
  StatefulSet controller creates them (two per StatefulSet), with the addresses assigned below.
- conformance/tests/*.go: every test (`var X = suite.ConformanceTest{`, its ShortName and Manifests), its subtests
  (`t.Run("...")`), every probe (`kubernetes.PokeServer(...)`: client namespace and pod, protocol, the server pod
  through the last `kubernetes.GetPod` assigned to the variable it names, port, expected result) and every
  mutation (rule swaps are parsed; the other mutations are listed in MUTATIONS below, each checked against the
  text of the line it cites). A line of a test that touches `mutate.Spec`, `SetLabels` or `Delete(` and is not
  accounted for by a known mutation stops the script.
- the manifests each test applies (conformance/base/...), templated like the base.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from copy import deepcopy

import yaml

UPSTREAM = "kubernetes-sigs/network-policy-api"
UPSTREAM_COMMIT = "0eec1b0e5fa92715b4c0f4c48d3c8d2913ed2159"
# conformance/utils/suite/suite.go: 8 consecutive ports from HostNetworkPortRangeStart, default 34345.
HOST_NETWORK_PORTS = [34345 + i for i in range(8)]

HERE = os.path.dirname(os.path.abspath(__file__))
NS_PREFIX = "network-policy-conformance-"

# Addresses (netpol needs pod IPs for `networks` peers; upstream reads them from the live pods). Two nodes; the
# `-0` pod of each StatefulSet runs on node-1, the `-1` pod on node-2. The hostNetwork centaur pods have their
# node's address.
NODES = [("node-1", "10.1.0.1"), ("node-2", "10.1.0.2")]
HOUSE_SUBNET = {"gryffindor": 1, "slytherin": 2, "hufflepuff": 3, "ravenclaw": 4}


def pod_ip(house, index):
    if house == "forbidden-forrest":
        return NODES[index][1]
    return f"10.2.{HOUSE_SUBNET[house]}.{10 + index}"


class Upstream:
    def __init__(self, git_dir):
        self.git_dir = git_dir
        out = subprocess.run(
            ["git", "--git-dir", git_dir, "rev-parse", UPSTREAM_COMMIT + "^{commit}"],
            check=True,
            capture_output=True,
            text=True,
        )
        assert out.stdout.strip() == UPSTREAM_COMMIT

    def read(self, path):
        return subprocess.run(
            ["git", "--git-dir", self.git_dir, "show", f"{UPSTREAM_COMMIT}:{path}"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout

    def ls(self, path):
        out = subprocess.run(
            ["git", "--git-dir", self.git_dir, "ls-tree", "--name-only", UPSTREAM_COMMIT, path + "/"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        return sorted(out.split())


def templated(text):
    return re.sub(
        r"\{\{\s*index \.HostNetworkPorts (\d)\s*\}\}", lambda m: str(HOST_NETWORK_PORTS[int(m.group(1))]), text
    )


def load_manifest(up, path):
    return [d for d in yaml.safe_load_all(templated(up.read(path))) if d is not None]


# ---------------------------------------------------------------------------------------------------------------
# Mutations other than rule swaps, per Go file: (first line, last line, what, function(state)), each line range
# checked to contain the given text.


def set_named_port(policy, direction, index, port_name):
    def f(state):
        rule = state.policy(policy)["spec"][direction][index]
        rule["protocols"] = [{"destinationNamedPort": port_name}]

    return f


def set_action(policy, direction, index, action):
    def f(state):
        state.policy(policy)["spec"][direction][index]["action"] = action

    return f


def set_priority(policy, priority):
    def f(state):
        state.policy(policy)["spec"]["priority"] = priority

    return f


def delete_policy(kind, namespace, name):
    def f(state):
        before = len(state.policies)
        state.policies = [
            p
            for p in state.policies
            if not (
                p["kind"] == kind and p["metadata"]["name"] == name and p["metadata"].get("namespace") == namespace
            )
        ]
        assert len(state.policies) == before - 1

    return f


def set_namespace_labels(ns, labels):
    def f(state):
        # `SetLabels` replaces every label; the API server puts back kubernetes.io/metadata.name (netpol adds it to
        # every namespace, as the API server does).
        state.namespaces[ns] = dict(labels)

    return f


def prepend_cidr_rule(policy, pods):
    def f(state):
        # mask: "/32" for an IPv4 pod IP (every pod IP here is IPv4), "/128" otherwise.
        rule = {
            "name": "allow-egress-to-specific-podIPs",
            "action": "Accept",
            "to": [{"networks": [state.ip(p) + "/32" for p in pods]}],
        }
        spec = state.policy(policy)["spec"]
        spec["egress"] = [rule] + spec["egress"]

    return f


GRYF_NP = ("NetworkPolicy", NS_PREFIX + "gryffindor", "allow-gress-from-to-slytherin-to-gryffindor")
CIDR_PODS = [(NS_PREFIX + "ravenclaw", "luna-lovegood-0"), (NS_PREFIX + "hufflepuff", "cedric-diggory-0")]


def cidr_mutations(policy, relabel, restore, prepend):
    return [
        (relabel, relabel + 1, 'SetLabels(map[string]string{"conformance-house": "denied-namespace-label"})',
         "slytherin-relabeled",
         "namespace network-policy-conformance-slytherin: labels set to {conformance-house: denied-namespace-label}",
         set_namespace_labels(NS_PREFIX + "slytherin", {"conformance-house": "denied-namespace-label"})),
        (restore, restore + 1, 'SetLabels(map[string]string{"conformance-house": "slytherin"})',
         "slytherin-label-restored",
         "namespace network-policy-conformance-slytherin: labels set back to {conformance-house: slytherin}",
         set_namespace_labels(NS_PREFIX + "slytherin", {"conformance-house": "slytherin"})),
        (prepend, prepend + 1, "mutate.Spec.Egress = append(newRule, mutate.Spec.Egress...)", None,
         f"{policy}: new egress rule 0 `allow-egress-to-specific-podIPs` (Accept, networks: the /32 of "
         "luna-lovegood-0 and cedric-diggory-0); the others move down by one",
         prepend_cidr_rule(policy, CIDR_PODS)),
    ]


# (first line, last line, text the range contains, tag of the state it starts within a subtest, what, function)
MUTATIONS = {
    "admin-network-policy-experimental-egress-rules.go": [
        (50, 58, "mutate.Spec.Egress[5] = namedPortRule", None,
         'egress-tcp: egress rule 5 protocols set to [{destinationNamedPort: "web"}]',
         set_named_port("egress-tcp", "egress", 5, "web")),
    ],
    "admin-network-policy-experimental-ingress-rules.go": [
        (43, 51, "mutate.Spec.Ingress[5] = dnsPortRule", None,
         'ingress-udp: ingress rule 5 protocols set to [{destinationNamedPort: "dns"}]',
         set_named_port("ingress-udp", "ingress", 5, "dns")),
    ],
    "baseline-admin-network-policy-experimental-egress-rules.go": [
        (50, 58, "mutate.Spec.Egress[3] = dnsPortRule", None,
         'default: egress rule 3 protocols set to [{destinationNamedPort: "dns"}]',
         set_named_port("default", "egress", 3, "dns")),
    ],
    "baseline-admin-network-policy-experimental-ingress-rules.go": [
        (49, 57, "mutate.Spec.Ingress[3] = namedPortRule", None,
         'default: ingress rule 3 protocols set to [{destinationNamedPort: "web"}]',
         set_named_port("default", "ingress", 3, "web")),
    ],
    "admin-network-policy-standard-integration.go": [
        (81, 82, "mutate.Spec.Ingress[0].Action = api.ClusterNetworkPolicyRuleActionPass", None,
         "pass-example: ingress rule 0 action set to Pass", set_action("pass-example", "ingress", 0, "Pass")),
        (101, 102, "mutate.Spec.Egress[0].Action = api.ClusterNetworkPolicyRuleActionPass", None,
         "pass-example: egress rule 0 action set to Pass", set_action("pass-example", "egress", 0, "Pass")),
        (126, 126, "err = s.Client.Delete(ctx, np)", None,
         "NetworkPolicy network-policy-conformance-gryffindor/allow-gress-from-to-slytherin-to-gryffindor deleted",
         delete_policy(*GRYF_NP)),
    ],
    "admin-network-policy-standard-priority.go": [
        (74, 75, "mutate.Spec.Priority = 40", None,
         "old-priority-60-new-priority-40-example: priority set to 40",
         set_priority("old-priority-60-new-priority-40-example", 40)),
    ],
    "admin-network-policy-standard-egress-inline-cidr-rules.go": cidr_mutations(
        "inline-cidr-as-peers-example", 80, 94, 138
    ),
    "baseline-admin-network-policy-standard-egress-inline-cidr-rules.go": cidr_mutations("default", 79, 93, 138),
}

# Probes whose deciding rule upstream names in the comment above them (and which that comment names correctly):
# (Go file, line of the PokeServer call) -> (line of the comment, direction, kind, namespace, policy, rule index).
# `netpol explain -o json` must end that direction's walk with this rule.
CNP = "ClusterNetworkPolicy"
DECIDED_BY = {
    ("admin-network-policy-standard-ingress-tcp-rules.go", 60): (59, "ingress", CNP, None, "ingress-tcp", 5),
    ("admin-network-policy-standard-ingress-tcp-rules.go", 64): (63, "ingress", CNP, None, "ingress-tcp", 6),
    ("admin-network-policy-standard-ingress-tcp-rules.go", 82): (81, "ingress", CNP, None, "ingress-tcp", 0),
    ("admin-network-policy-standard-ingress-tcp-rules.go", 95): (94, "ingress", CNP, None, "ingress-tcp", 3),
    ("admin-network-policy-standard-ingress-tcp-rules.go", 117): (116, "ingress", CNP, None, "ingress-tcp", 0),
    ("admin-network-policy-standard-ingress-udp-rules.go", 65): (64, "ingress", CNP, None, "ingress-udp", 6),
    ("admin-network-policy-standard-ingress-sctp-rules.go", 60): (59, "ingress", CNP, None, "ingress-sctp", 5),
    ("admin-network-policy-standard-egress-tcp-rules.go", 60): (59, "egress", CNP, None, "egress-tcp", 5),
    ("admin-network-policy-standard-egress-tcp-rules.go", 64): (63, "egress", CNP, None, "egress-tcp", 6),
    ("admin-network-policy-standard-egress-tcp-rules.go", 137): (136, "egress", CNP, None, "egress-tcp", 3),
    ("admin-network-policy-standard-egress-udp-rules.go", 96): (95, "egress", CNP, None, "egress-udp", 3),
    ("admin-network-policy-standard-egress-sctp-rules.go", 65): (64, "egress", CNP, None, "egress-sctp", 6),
    ("admin-network-policy-standard-gress-rules.go", 79): (78, "egress", CNP, None, "gress-rules", 5),
    ("admin-network-policy-standard-gress-rules.go", 111): (110, "ingress", CNP, None, "gress-rules", 6),
    ("admin-network-policy-standard-gress-rules.go", 179): (178, "egress", CNP, None, "gress-rules", 3),
    ("admin-network-policy-standard-gress-rules.go", 269): (268, "ingress", CNP, None, "gress-rules", 0),
    ("admin-network-policy-standard-priority.go", 48): (47, "ingress", CNP, None, "priority-50-example", 0),
    ("admin-network-policy-standard-priority.go", 62): (61, "egress", CNP, None, "priority-50-example", 0),
    ("admin-network-policy-standard-priority.go", 81): (80, "ingress", CNP, None, "default", 0),
    ("admin-network-policy-standard-priority.go", 92): (91, "egress", CNP, None, "default", 0),
    ("admin-network-policy-standard-integration.go", 54): (53, "ingress", CNP, None, "pass-example", 0),
    ("admin-network-policy-standard-integration.go", 68): (67, "egress", CNP, None, "pass-example", 0),
    ("admin-network-policy-standard-integration.go", 88): (86, "ingress", "NetworkPolicy", GRYF_NP[1], GRYF_NP[2], 0),
    ("admin-network-policy-standard-integration.go", 108): (106, "egress", "NetworkPolicy", GRYF_NP[1], GRYF_NP[2], 0),
    ("admin-network-policy-standard-integration.go", 133): (131, "ingress", CNP, None, "default", 0),
    ("admin-network-policy-standard-integration.go", 147): (145, "egress", CNP, None, "default", 0),
    ("admin-network-policy-standard-egress-inline-cidr-rules.go", 50): (
        47, "egress", CNP, None, "inline-cidr-as-peers-example", 1),
    ("admin-network-policy-standard-egress-inline-cidr-rules.go", 70): (
        67, "egress", CNP, None, "inline-cidr-as-peers-example", 0),
    ("admin-network-policy-standard-egress-inline-cidr-rules.go", 143): (
        142, "egress", CNP, None, "inline-cidr-as-peers-example", 0),
    ("admin-network-policy-standard-egress-inline-cidr-rules.go", 163): (
        157, "egress", CNP, None, "inline-cidr-as-peers-example", 2),
    ("admin-network-policy-experimental-egress-rules.go", 63): (62, "egress", CNP, None, "egress-tcp", 5),
    ("admin-network-policy-experimental-ingress-rules.go", 56): (55, "ingress", CNP, None, "ingress-udp", 5),
    ("admin-network-policy-experimental-egress-rules.go", 89): (
        88, "egress", CNP, None, "node-and-cidr-as-peers-example", 0),
    ("admin-network-policy-experimental-egress-rules.go", 96): (
        95, "egress", CNP, None, "node-and-cidr-as-peers-example", 1),
    ("admin-network-policy-experimental-egress-rules.go", 102): (
        101, "egress", CNP, None, "node-and-cidr-as-peers-example", 2),
    ("baseline-admin-network-policy-standard-ingress-tcp-rules.go", 60): (59, "ingress", CNP, None, "default", 3),
    ("baseline-admin-network-policy-standard-ingress-tcp-rules.go", 64): (63, "ingress", CNP, None, "default", 4),
    ("baseline-admin-network-policy-standard-ingress-tcp-rules.go", 95): (94, "ingress", CNP, None, "default", 2),
    ("baseline-admin-network-policy-standard-egress-udp-rules.go", 61): (60, "egress", CNP, None, "default", 3),
    ("baseline-admin-network-policy-standard-egress-udp-rules.go", 65): (64, "egress", CNP, None, "default", 4),
    ("baseline-admin-network-policy-standard-egress-udp-rules.go", 96): (95, "egress", CNP, None, "default", 2),
    ("baseline-admin-network-policy-standard-egress-inline-cidr-rules.go", 49): (46, "egress", CNP, None, "default", 1),
    ("baseline-admin-network-policy-standard-egress-inline-cidr-rules.go", 69): (66, "egress", CNP, None, "default", 0),
    ("baseline-admin-network-policy-standard-egress-inline-cidr-rules.go", 144): (
        143, "egress", CNP, None, "default", 0),
    ("baseline-admin-network-policy-experimental-egress-rules.go", 63): (62, "egress", CNP, None, "default", 3),
    ("baseline-admin-network-policy-experimental-egress-rules.go", 67): (66, "egress", CNP, None, "default", 4),
    ("baseline-admin-network-policy-experimental-ingress-rules.go", 62): (61, "ingress", CNP, None, "default", 3),
    ("baseline-admin-network-policy-experimental-ingress-rules.go", 66): (65, "ingress", CNP, None, "default", 4),
    ("baseline-admin-network-policy-experimental-egress-rules.go", 88): (87, "egress", CNP, None, "default", 0),
    ("baseline-admin-network-policy-experimental-egress-rules.go", 97): (96, "egress", CNP, None, "default", 1),
}


# ---------------------------------------------------------------------------------------------------------------


class State:
    def __init__(self, policies, namespaces, ips):
        self.policies = policies
        self.namespaces = namespaces
        self.ips = ips

    def policy(self, name):
        found = [p for p in self.policies if p["kind"] == CNP and p["metadata"]["name"] == name]
        assert len(found) == 1, name
        return found[0]

    def ip(self, pod):
        return self.ips[pod]


def line_of(text, pos):
    return text.count("\n", 0, pos) + 1


PROBE = re.compile(
    r'kubernetes\.PokeServer\(t, s\.ClientSet, &s\.KubeConfig, "([^"]+)", "([^"]+)", "(tcp|udp|sctp)",\s*'
    r"(\w+)\.Status\.PodIP, int32\(([^)]+)\), s\.TimeoutConfig, (true|false)\)"
)
GETPOD = re.compile(r'(\w+) :?= kubernetes\.GetPod\(t, s\.Client, "([^"]+)", "([^"]+)"')
GETCNP = re.compile(r'kubernetes\.GetClusterNetworkPolicy\(t, s\.Client, "([^"]+)"')
SWAP = re.compile(
    r"(\w+) := mutate\.Spec\.(Ingress|Egress)\[(\d+)\]\s*\n"
    r"\s*mutate\.Spec\.\2\[\3\] = mutate\.Spec\.\2\[(\d+)\]\s*\n"
    r"\s*mutate\.Spec\.\2\[\4\] = \1\s*\n"
)
TEST = re.compile(r"var (\w+) = suite\.ConformanceTest\{")
RUN = re.compile(r't\.Run\("([^"]+)"')


def port_value(expr):
    m = re.fullmatch(r"s\.HostNetworkPorts\[(\d)\]", expr)
    return HOST_NETWORK_PORTS[int(m.group(1))] if m else int(expr)


def slug(name):
    s = name.lower()
    s = re.sub(r"^should support (an?|the) ", "", s)
    s = re.sub(r"^should ", "", s)
    s = re.sub(r"[^a-z0-9]+", "-", s).strip("-")
    return s


def parse_tests(up, go_file):
    """The tests of one Go file: name, manifests, subtests, probes and mutations (with their lines)."""
    path = f"conformance/tests/{go_file}"
    text = up.read(path)
    lines = text.split("\n")
    starts = [(m.start(), m.group(1)) for m in TEST.finditer(text)]
    tests = []
    extra = list(MUTATIONS.get(go_file, []))
    for i, (start, var) in enumerate(starts):
        end = starts[i + 1][0] if i + 1 < len(starts) else len(text)
        body = text[start:end]
        short = re.search(r'ShortName:\s*"([^"]+)"', body).group(1)
        assert short == var, (short, var)
        manifests = re.findall(r'"([^"]+)"', re.search(r"Manifests: \[\]string\{([^}]*)\}", body).group(1))
        events = []  # (pos, kind, data)
        for m in RUN.finditer(body):
            events.append((start + m.start(), "run", m.group(1)))
        for m in GETPOD.finditer(body):
            events.append((start + m.start(), "getpod", (m.group(1), m.group(2), m.group(3))))
        for m in GETCNP.finditer(body):
            events.append((start + m.start(), "getcnp", m.group(1)))
        for m in PROBE.finditer(body):
            events.append((start + m.start(), "probe", m.groups()))
        assert body.count("PokeServer(") == len(PROBE.findall(body)), f"{path}: a probe was not understood"
        handled_lines = set()
        for m in SWAP.finditer(body):
            pos = start + m.start()
            first = line_of(text, pos)
            handled_lines.update(range(first, first + 3))
            events.append((pos, "swap", (m.group(2).lower(), int(m.group(3)), int(m.group(4)), first, first + 2)))
        for first, last, needle, tag, what, fn in list(extra):
            pos = sum(len(l) + 1 for l in lines[: first - 1])
            if not start <= pos < end:
                continue
            assert any(needle in l for l in lines[first - 1 : last]), f"{path}:{first}-{last} lacks {needle!r}"
            handled_lines.update(range(first, last + 1))
            events.append((pos, "mutation", (first, last, tag, what, fn)))
            extra.remove((first, last, needle, tag, what, fn))
        for n in range(line_of(text, start), line_of(text, end)):
            l = lines[n - 1]
            if re.search(r"mutate\.Spec|SetLabels|Delete\(", l) and n not in handled_lines:
                if re.fullmatch(r"\s*(\w+) := mutate(\.DeepCopy\(\))?\.Spec\.(Ingress|Egress)\[\d+\]\s*", l):
                    continue  # the copy a named-port mutation starts from (listed in MUTATIONS by its range)
                raise SystemExit(f"{path}:{n}: a mutation this script does not know: {l.strip()}")
        events.sort(key=lambda e: e[0])
        tests.append({"name": short, "go_file": go_file, "manifests": manifests, "events": events, "text": text})
    assert not extra, f"{go_file}: mutations not found in any test: {extra}"
    return tests


def dump_yaml(docs):
    return yaml.safe_dump_all(docs, sort_keys=False, default_flow_style=False, width=120)


def write(path, content):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(content)


def base_objects(up):
    docs = load_manifest(up, "conformance/base/manifests.yaml")
    namespaces = {}
    pods = []
    for d in docs:
        if d["kind"] == "Namespace":
            namespaces[d["metadata"]["name"]] = dict(d["metadata"].get("labels") or {})
        elif d["kind"] == "StatefulSet":
            sts = d["metadata"]["name"]
            ns = d["metadata"]["namespace"]
            house = ns[len(NS_PREFIX):]
            template = d["spec"]["template"]
            for i in range(d["spec"]["replicas"]):
                name = f"{sts}-{i}"
                labels = dict(template["metadata"]["labels"])
                # What the StatefulSet controller adds (controller-revision-hash, a hash of the template, is left
                # out: nothing selects on it).
                labels["apps.kubernetes.io/pod-index"] = str(i)
                labels["statefulset.kubernetes.io/pod-name"] = name
                spec = deepcopy(template["spec"])
                spec = {"nodeName": NODES[i][0], **spec}
                ip = pod_ip(house, i)
                pods.append(
                    {
                        "apiVersion": "v1",
                        "kind": "Pod",
                        "metadata": {"name": name, "namespace": ns, "labels": labels},
                        "spec": spec,
                        "status": {
                            "phase": "Running",
                            "hostIP": NODES[i][1],
                            "hostIPs": [{"ip": NODES[i][1]}],
                            "podIP": ip,
                            "podIPs": [{"ip": ip}],
                        },
                    }
                )
        else:
            raise SystemExit(f"unexpected kind {d['kind']} in manifests.yaml")
    nodes = [
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "labels": {
                    "kubernetes.io/arch": "amd64",
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                },
            },
            "status": {"addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}]},
        }
        for name, ip in NODES
    ]
    return namespaces, pods, nodes


def namespace_docs(namespaces):
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n, "labels": l}}
        for n, l in namespaces.items()
    ]


HEADER = """\
# Generated by generate.py from {repo}@{commit}: do not edit.
"""


def main():
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    up = Upstream(sys.argv[1])
    namespaces, pods, nodes = base_objects(up)
    ips = {(p["metadata"]["namespace"], p["metadata"]["name"]): p["status"]["podIP"] for p in pods}
    head = HEADER.format(repo=UPSTREAM, commit=UPSTREAM_COMMIT)

    for d in os.listdir(HERE):
        if os.path.isdir(os.path.join(HERE, d)):
            shutil.rmtree(os.path.join(HERE, d))
    src = "# Source: conformance/base/manifests.yaml\n"
    write(f"{HERE}/base/namespaces.yaml", head + src + dump_yaml(namespace_docs(namespaces)))
    write(
        f"{HERE}/base/pods.yaml",
        head + src + "# The pods the StatefulSets' controller creates (two each), with assigned addresses.\n"
        + dump_yaml(pods),
    )
    write(
        f"{HERE}/base/nodes.yaml",
        head + "# Not upstream: the nodes the pods run on (the hostNetwork centaur pods have their address).\n"
        + dump_yaml(nodes),
    )

    go_files = [p.split("/")[-1] for p in up.ls("conformance/tests") if p.endswith(".go") and not p.endswith("main.go")]
    # The tests that run: those each file's init() appends to ConformanceTests.
    registered = set()
    for go_file in go_files:
        for block in re.findall(r"ConformanceTests = append\(ConformanceTests,([^)]*)\)", up.read(f"conformance/tests/{go_file}")):
            registered.update(re.findall(r"\w+", block))
    summary = []
    for go_file in go_files:
        for test in parse_tests(up, go_file):
            assert test["name"] in registered, f"{test['name']} is defined but not registered"
            registered.discard(test["name"])
            summary.append(emit_test(up, test, namespaces, ips, head))
    assert not registered, f"registered tests not found: {registered}"
    summary.sort()
    tests = len(summary)
    steps = sum(s[1] for s in summary)
    probes = sum(s[2] for s in summary)
    annotated = sum(s[3] for s in summary)
    for s in summary:
        print(f"{s[0]:45} steps {s[1]:2} probes {s[2]:3} decided_by {s[3]}")
    print(f"{tests} tests, {steps} steps, {probes} probes ({annotated} with decided_by)")
    used = {(t, l) for (t, l) in DECIDED_BY}
    assert len(used) == annotated, "a DECIDED_BY entry names no probe"


def emit_test(up, test, base_namespaces, ips, head):
    name, go_file, text = test["name"], test["go_file"], test["text"]
    lines = text.split("\n")
    policies = []
    for m in test["manifests"]:
        policies += load_manifest(up, f"conformance/{m}")
    state = State(policies, deepcopy(base_namespaces), ips)
    applied = []  # the mutations so far: {"what", "source"}
    steps = []  # {"subtest", "tag", "probes", "policies", "namespaces", "mutations"}
    subtest = None
    tag = None
    servers = {}
    cnp = None
    annotated = 0

    def current_step():
        key = (subtest, tag)
        if not steps or steps[-1]["key"] != key:
            steps.append(
                {
                    "key": key,
                    "subtest": subtest,
                    "tag": tag,
                    "probes": [],
                    "policies": deepcopy(state.policies),
                    "namespaces": deepcopy(state.namespaces),
                    "mutations": list(applied),
                }
            )
        return steps[-1]

    for pos, kind, data in test["events"]:
        line = line_of(text, pos)
        if kind == "run":
            subtest, tag = data, None
        elif kind == "getpod":
            servers[data[0]] = (data[1], data[2])
        elif kind == "getcnp":
            cnp = data
        elif kind == "swap":
            direction, i, j, first, last = data
            spec = state.policy(cnp)["spec"][direction]
            spec[i], spec[j] = spec[j], spec[i]
            applied.append(
                {
                    "what": f"{cnp}: {direction} rules {i} and {j} swapped (now {i}: {spec[i]['name']}, "
                    f"{j}: {spec[j]['name']})",
                    "source": f"conformance/tests/{go_file}:{first}-{last}",
                }
            )
        elif kind == "mutation":
            first, last, new_tag, what, fn = data
            fn(state)
            applied.append({"what": what, "source": f"conformance/tests/{go_file}:{first}-{last}"})
            if new_tag is not None:
                tag = new_tag
        elif kind == "probe":
            cns, cpod, proto, server_var, port, should = data
            sns, spod = servers[server_var]
            step = current_step()
            # A mutation in the same subtest after this step's probes started would be a new step: the key
            # (subtest, tag) covers it only when every such mutation has a tag.
            assert step["mutations"] == applied, f"{go_file}:{line}: untagged mutation inside a subtest"
            probe = {
                "src": f"{cns}/{cpod}",
                "dst": f"{sns}/{spod}",
                "protocol": proto.upper(),
                "port": port_value(port),
                "expect": "allow" if should == "true" else "deny",
                "source": f"conformance/tests/{go_file}:{line}",
                "test": name,
                "subtest": subtest,
            }
            ann = DECIDED_BY.get((go_file, line))
            if ann is not None:
                comment_line, direction, kind_, ns, pname, index = ann
                comment = lines[comment_line - 1].strip()
                assert comment.startswith("//"), f"{go_file}:{comment_line} is not a comment"
                if kind_ == CNP:
                    rule = state.policy(pname)["spec"][direction][index]
                    action = rule["action"]
                    want = {"allow": ("Accept", "Pass"), "deny": ("Deny",)}[probe["expect"]]
                    assert action in want, (go_file, line, action, probe["expect"])
                    rule_name = rule["name"]
                else:
                    rule_name, action = None, None
                probe["decided_by"] = {
                    "direction": direction,
                    "kind": kind_,
                    **({"namespace": ns} if ns else {}),
                    "policy": pname,
                    "rule": index,
                    **({"rule_name": rule_name} if rule_name else {}),
                    **({"action": action} if action else {}),
                    "comment": f"conformance/tests/{go_file}:{comment_line}",
                }
                annotated += 1
            step["probes"].append(probe)

    for n, step in enumerate(steps, start=1):
        dirname = f"{n:02}-{slug(step['subtest'])}" + (f"-{step['tag']}" if step["tag"] else "")
        d = f"{HERE}/{name}/{dirname}"
        muts = step["mutations"]
        header = head + f"# Test {name} (conformance/tests/{go_file}), subtest \"{step['subtest']}\".\n"
        header += "# Applied: " + ", ".join(f"conformance/{m}" for m in test["manifests"]) + "\n"
        if muts:
            header += "# Then, in order (mutations accumulate over the subtests):\n"
            for m in muts:
                header += f"# - {m['what']} ({m['source']})\n"
        write(f"{d}/policies.yaml", header + dump_yaml(step["policies"]))
        if step["namespaces"] != base_namespaces:
            write(
                f"{d}/namespaces.yaml",
                header
                + "# Replaces base/namespaces.yaml for this step.\n"
                + dump_yaml(namespace_docs(step["namespaces"])),
            )
        write(
            f"{d}/step.json",
            json.dumps(
                {
                    "upstream": f"{UPSTREAM}@{UPSTREAM_COMMIT}",
                    "test": name,
                    "go_file": f"conformance/tests/{go_file}",
                    "subtest": step["subtest"],
                    "manifests": [f"conformance/{m}" for m in test["manifests"]],
                    "mutations": muts,
                    "probes": len(step["probes"]),
                },
                indent=2,
            )
            + "\n",
        )
        write(f"{d}/expect.jsonl", "".join(json.dumps(p, separators=(",", ":")) + "\n" for p in step["probes"]))
    return (name, len(steps), sum(len(s["probes"]) for s in steps), annotated)


if __name__ == "__main__":
    main()
