// The side panels and the edges table, built with DOM calls (text nodes only, never parsed HTML: names and
// messages come from the manifests).

/** h('div', {class: 'x', dataset: {a: 1}, onclick}, child, 'text', ...) */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'text') el.textContent = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** Replaces `el`'s children, skipping null/false/undefined (conditional parts). */
export function fill(el, ...children) {
  el.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return el;
}

export const plural = (n, word) => `${n.toLocaleString('en-US')} ${word}${n === 1 ? '' : 's'}`;

/** "4 of 6" or "all 4". */
export function pairsText(pairs, total) {
  return pairs >= total ? `all ${pairs.toLocaleString('en-US')}` : `${pairs.toLocaleString('en-US')} of ${total.toLocaleString('en-US')}`;
}

export function nodeLabel(n) {
  return n ? `${n.namespace} / ${n.name}` : '?';
}

function isolationLine(iso, count, dir, tiers) {
  if (iso.isolatedPods === 0) {
    return h('span', { class: 'iso-no' }, `not isolated: every ${dir} allowed`);
  }
  const cls = iso.isolatedPods >= count ? 'iso-yes' : 'iso-some';
  // Only tiers that pass what they leave undecided apply (admin tiers; Calico tiers with `defaultAction: Pass`):
  // the pods are governed, not isolated. A NetworkPolicy, or a tier whose default action is Deny, isolates.
  const denies = iso.networkPolicyPods > 0 || (tiers && iso.tiers.some((t) => tierDefault(tiers, t.tier) === 'Deny'));
  const word = denies ? 'isolated' : 'governed';
  const who = iso.isolatedPods >= count ? word : `${iso.isolatedPods} of ${count} pods ${word}`;
  return h('span', {}, h('span', { class: cls }, who), ` by ${iso.policies.join(', ')}`);
}

/** The tiers' names in Kubernetes' words (a cluster without Calico objects). */
const K8S_TIERS = ['Admin', 'NetworkPolicy', 'Baseline'];

/** Whether the tiers (`GET /api/v1/tiers`) are Calico's: `kube-admin`, `default`, `kube-baseline` and its own. */
export function calicoTiers(tiers) {
  return Boolean(tiers && tiers.length && tiers.some((t) => !K8S_TIERS.includes(t.name)));
}

function tierInfo(tiers, name) {
  return tiers ? tiers.find((t) => t.name === name) : undefined;
}

/** A tier's default action (`Deny`, `Pass`), if the tiers are known. */
function tierDefault(tiers, name) {
  const t = tierInfo(tiers, name);
  return t ? t.defaultAction : undefined;
}

/**
 * A tier's badge: Admin, NetworkPolicy (NP) or Baseline; Calico's kube-admin, default, kube-baseline and its own
 * tiers by name. With the tier's definition (`GET /api/v1/tiers`), the title gives its order and default action.
 */
export function tierBadge(tier, info) {
  const short = { Admin: 'Admin', NetworkPolicy: 'NP', Baseline: 'Baseline' }[tier] || tier;
  // The class comes from a fixed list: tier names come from manifests.
  const cls = { Admin: 'admin', 'kube-admin': 'admin', NetworkPolicy: 'networkpolicy', default: 'networkpolicy', Baseline: 'baseline', 'kube-baseline': 'baseline' }[tier] || 'custom';
  const title = info ? `${tier} tier · order ${info.order ?? 'none'} · default action ${info.defaultAction}` : `${tier} tier`;
  return h('span', { class: `tier ${cls}`, title, dataset: { tierName: tier } }, short);
}

const priorityText = (p) => (p === undefined || p === null ? '' : ` (priority ${p})`);

/** Whether a policy reference names a Calico policy (`gnp/name`, `caliconetworkpolicy/ns/name`). */
const calicoRef = (ref) => /^(gnp|caliconetworkpolicy)\//.test(ref);

/**
 * A policy's place in its tier: `(order 10)` for Calico's policies (and Kubernetes NetworkPolicies in a Calico
 * cluster), `(priority 5)` for the admin kinds; nothing for the others.
 */
export function rankText(p) {
  if (p.order !== undefined) return ` (order ${p.order ?? 'none'})`;
  return priorityText(p.priority);
}

/** A node's policies in one direction, tier by tier in evaluation order, each with how many pods it applies to. */
function tierList(iso, count, dir, onPolicy, tiers) {
  if (!iso.tiers || !iso.tiers.length) return null;
  return h(
    'div',
    { class: 'tiers', dataset: { direction: dir } },
    h('div', { class: 'tier-dir' }, dir),
    h(
      'ol',
      {},
      iso.tiers.map((t) =>
        h(
          'li',
          { dataset: { tier: t.tier } },
          tierBadge(t.tier, tierInfo(tiers, t.tier)),
          ' ',
          t.policies.map((p, i) => [
            i ? ', ' : null,
            h('a', { class: 'link mono', dataset: { policy: p.policy }, title: p.kind, onclick: () => onPolicy(p.policy) }, p.policy),
            h('span', { class: 'muted' }, `${rankText(p)}${p.pods !== undefined && p.pods < count ? ` · ${p.pods} of ${count} pods` : ''}`),
          ]),
        ),
      ),
    ),
  );
}

/** One direction of a node's traffic with addresses outside the cluster (no pod has them). */
function outsideLine(acc, count, to, onExplainFlow) {
  const dir = to ? 'to' : 'from';
  if (acc.pods === 0) return h('li', { dataset: { outside: dir } }, h('span', { class: 'muted' }, to ? 'can connect to no outside address' : 'no outside address can reach it'));
  const what = [acc.anyPods ? 'any address' : null, ...acc.blocks].filter(Boolean).join(' · ');
  return h(
    'li',
    { dataset: { outside: dir } },
    to ? 'can connect to ' : 'can be reached from ',
    h('span', { class: acc.anyPods ? 'iso-no' : 'mono' }, what),
    acc.pods < count ? h('span', { class: 'muted' }, ` (${acc.pods} of ${count} pods)`) : null,
    acc.example ? ' ' : null,
    acc.example ? h('a', { class: 'link muted small', title: `explain ${acc.example[0]} → ${acc.example[1]}`, onclick: () => onExplainFlow(acc.example) }, 'explain') : null,
  );
}

/** How the tiers are evaluated, in words. */
function tierOrderText(tiers) {
  if (!calicoTiers(tiers)) return 'evaluated Admin → NetworkPolicy → Baseline; what no tier decides is allowed';
  const list = tiers.map((t) => `${t.name} (${t.defaultAction})`).join(' → ');
  return `evaluated ${list}: in a tier that selects the pod, the first matching rule decides or passes; the tier's default action (in parentheses) takes the rest; what no tier decides is allowed`;
}

/** The inspect panel of a node: isolation, who can reach it, where it can go, its pods. */
export function renderNode(el, n, ctx) {
  const { edges, nodes, port, grouping, onNode, onEdge, onExplainPod, onExplainFlow, onFocusNamespace, onPolicy, tiers } = ctx;
  const incoming = edges.filter((e) => e.dst === n.id);
  const outgoing = edges.filter((e) => e.src === n.id);
  const peerList = (list, side) => {
    if (!list.length) return h('p', { class: 'muted small' }, side === 'in' ? 'no pod can reach it on this port' : 'it can reach no pod on this port');
    return h(
      'ul',
      { class: 'peers' },
      list.map((e) => {
        const other = nodes.get(side === 'in' ? e.src : e.dst);
        const pairs = e.pairs ?? e.after;
        return h(
          'li',
          { dataset: { peer: other ? other.id : '' } },
          h('a', { onclick: () => other && onNode(other) }, other ? nodeLabel(other) : '?'),
          other && other.id === n.id ? h('span', { class: 'muted' }, ' (its own pods)') : null,
          ' ',
          h('a', { class: 'link muted small', onclick: () => onEdge(e), title: 'explain' }, `${pairsText(pairs, e.total)} pairs`),
        );
      }),
    );
  };
  fill(
    el,
    h('div', { class: 'title' }, h('span', { class: 'big' }, n.name), h('span', { class: 'muted' }, n.namespace)),
    h(
      'div',
      { class: 'kv' },
      h('span', {}, 'pods'),
      h('span', {}, String(n.count), n.hostNetwork ? h('span', { class: 'muted' }, ` (${n.hostNetwork} hostNetwork)`) : null),
      h('span', {}, 'labels'),
      h('span', { class: 'labels' }, Object.entries(n.labels).length ? Object.entries(n.labels).map(([k, v]) => h('span', { class: 'label' }, `${k}=${v}`)) : h('span', { class: 'muted' }, 'none in common')),
      h('span', {}, 'ingress'),
      isolationLine(n.ingress, n.count, 'ingress', tiers),
      h('span', {}, 'egress'),
      isolationLine(n.egress, n.count, 'egress', tiers),
    ),
    n.ingress.tiers.length || n.egress.tiers.length
      ? h(
          'div',
          { class: 'section', id: 'tiers' },
          h('h4', {}, 'Policies, tier by tier'),
          tierList(n.ingress, n.count, 'ingress', onPolicy, tiers),
          tierList(n.egress, n.count, 'egress', onPolicy, tiers),
          h('p', { class: 'muted small', id: 'tier-order' }, tierOrderText(tiers)),
        )
      : null,
    grouping !== 'labels'
      ? h('div', { class: 'row' }, h('button', { type: 'button', onclick: () => onFocusNamespace(n.namespace) }, `Show the workloads of ${n.namespace}`))
      : null,
    h('div', { class: 'section', id: 'reach-in' }, h('h4', { class: 'in' }, `Can be reached from (${port}) · ${incoming.length}`), peerList(incoming, 'in')),
    h('div', { class: 'section', id: 'reach-out' }, h('h4', { class: 'out' }, `Can connect to (${port}) · ${outgoing.length}`), peerList(outgoing, 'out')),
    n.toOutside
      ? h('div', { class: 'section', id: 'reach-outside' }, h('h4', {}, `Outside the cluster (${port})`), h('ul', { class: 'peers' }, outsideLine(n.toOutside, n.count, true, onExplainFlow), outsideLine(n.fromOutside, n.count, false, onExplainFlow)))
      : null,
    h(
      'div',
      { class: 'section' },
      h('h4', {}, `Pods${n.pods.length < n.count ? ` (first ${n.pods.length} of ${n.count})` : ''}`),
      h('ul', { class: 'pods' }, n.pods.map((p) => h('li', {}, h('a', { class: 'link', title: 'use as the source of an explanation', onclick: () => onExplainPod(`${n.namespace}/${p}`) }, p)))),
    ),
  );
}

/** A Calico entity rule (`source` or `destination`) in words: its criteria, or "any"; the subject's own side as such. */
function entityText(e, word) {
  const parts = [];
  if (e.selector) parts.push(`selector ${e.selector}`);
  if (e.notSelector) parts.push(`notSelector ${e.notSelector}`);
  if (e.nets && e.nets.length) parts.push(`nets ${e.nets.join(', ')}`);
  if (e.notNets && e.notNets.length) parts.push(`notNets ${e.notNets.join(', ')}`);
  if (e.ports && e.ports.length) parts.push(`ports ${e.ports.join(', ')}`);
  if (e.notPorts && e.notPorts.length) parts.push(`notPorts ${e.notPorts.join(', ')}`);
  if (e.side === 'subject') {
    return h('span', { class: 'entity', dataset: { side: 'subject' } }, h('i', {}, 'the selected endpoint'), parts.length ? h('span', { class: 'mono' }, ` where ${parts.join(' · ')}`) : null);
  }
  return h('span', { class: 'entity', dataset: { side: 'peer' } }, parts.length ? h('span', { class: 'mono' }, parts.join(' · ')) : h('span', { class: 'muted' }, `any ${word}`));
}

/** A Calico rule: action, protocol criteria, source and destination (the subject's own side marked). */
function calicoRule(r) {
  const icmp = (m) => `type ${m.type}${m.code === undefined ? '' : ` code ${m.code}`}`;
  const proto = [
    r.protocol ? `protocol ${r.protocol}` : null,
    r.notProtocol ? `notProtocol ${r.notProtocol}` : null,
    r.ipVersion ? `IPv${r.ipVersion}` : null,
    r.icmp ? `icmp ${icmp(r.icmp)}` : null,
    r.notICMP ? `notICMP ${icmp(r.notICMP)}` : null,
  ].filter(Boolean);
  return h(
    'li',
    { dataset: { action: r.action, rule: r.index } },
    h('span', { class: `act ${r.action}` }, r.apiAction),
    proto.length ? h('span', { class: 'mono' }, ` ${proto.join(' · ')}`) : null,
    ' from ',
    entityText(r.source, 'source'),
    ' to ',
    entityText(r.destination, 'destination'),
    r.unsupported ? h('div', { class: 'muted small' }, `not evaluated: ${r.unsupported} (netpol treats the rule as matching no traffic)`) : null,
  );
}

/** A policy's rules of one direction, each with its action, peers and ports. */
function ruleList(p, dir) {
  const rules = dir === 'ingress' ? p.ingressRules : p.egressRules;
  if (!rules || !rules.length) return null;
  const peerWord = dir === 'ingress' ? 'from' : 'to';
  return h(
    'ol',
    { class: 'rules', start: 0, dataset: { direction: dir } },
    rules.map((r) =>
      r.source && r.destination
        ? calicoRule(r)
        : h(
            'li',
            { dataset: { action: r.action, rule: r.index } },
            h('span', { class: `act ${r.action}` }, r.apiAction),
            r.name ? h('span', { class: 'mono' }, ` "${r.name}"`) : null,
            ` ${peerWord} `,
            r.peers.length ? h('span', { class: 'mono' }, r.peers.join(' · ')) : h('span', { class: 'muted' }, `any ${dir === 'ingress' ? 'source' : 'destination'}`),
            ', ',
            r.ports.length ? h('span', { class: 'mono' }, r.ports.join(', ')) : h('span', { class: 'muted' }, 'any port'),
          ),
    ),
  );
}

/** The inspect panel of a policy (from the list or a lint finding). */
export function renderPolicy(el, p, ctx) {
  const calico = p.selector !== undefined;
  const cluster = p.namespaceSelector !== undefined || (calico && !p.namespace);
  const info = tierInfo(ctx.tiers, p.tier);
  let subject;
  if (calico) subject = h('span', { class: 'mono', dataset: { selector: p.selector } }, p.selector);
  else if (p.namespaceSelector !== undefined) subject = h('span', { class: 'mono' }, `namespaces ${p.namespaceSelector}`, h('br'), `pods ${p.podSelector}`);
  else subject = h('span', { class: 'mono' }, p.podSelector);
  fill(
    el,
    h('div', { class: 'title' }, h('span', { class: 'big' }, p.name), h('span', { class: 'muted' }, cluster ? p.ref : p.namespace)),
    h(
      'div',
      { class: 'kv' },
      h('span', {}, 'kind'),
      h('span', { dataset: { kind: p.kind } }, p.kind),
      h('span', {}, 'tier'),
      h(
        'span',
        { dataset: { tier: p.tier } },
        tierBadge(p.tier, info),
        rankText(p),
        info && calicoTiers(ctx.tiers) ? h('span', { class: 'muted small' }, ` · tier order ${info.order ?? 'none'}, default action ${info.defaultAction}`) : null,
      ),
      h('span', {}, calico || p.namespaceSelector !== undefined ? 'subject' : 'selector'),
      subject,
      h('span', {}, 'types'),
      h('span', {}, p.policyTypes.join(', ') || 'none'),
      h('span', {}, 'rules'),
      h('span', {}, `${p.rules.ingress} ingress, ${p.rules.egress} egress`),
      h('span', {}, 'selects'),
      h('span', {}, plural(p.selectedPods.length, 'pod')),
    ),
    h('div', { class: 'row' }, h('button', { type: 'button', onclick: () => ctx.onEdit(p) }, 'Edit in what-if'), h('button', { type: 'button', onclick: () => ctx.onDelete(p) }, 'Delete in what-if')),
    p.ingressRules && p.ingressRules.length ? h('div', { class: 'section' }, h('h4', { class: 'in' }, 'Ingress rules'), ruleList(p, 'ingress')) : null,
    p.egressRules && p.egressRules.length ? h('div', { class: 'section' }, h('h4', { class: 'out' }, 'Egress rules'), ruleList(p, 'egress')) : null,
    h('div', { class: 'section' }, h('h4', {}, 'Selected pods')),
    p.selectedPods.length ? h('ul', { class: 'pods' }, p.selectedPods.slice(0, 200).map((x) => h('li', {}, x))) : h('p', { class: 'muted small' }, 'selects no pod'),
  );
}

/** The inspect panel of a tier (`GET /api/v1/tiers`): its order, default action and policies in order. */
export function renderTier(el, t, ctx) {
  fill(
    el,
    h('div', { class: 'title' }, h('span', { class: 'big' }, t.name), h('span', { class: 'muted' }, t.builtIn ? 'built-in tier' : 'tier')),
    h(
      'div',
      { class: 'kv' },
      h('span', {}, 'order'),
      h('span', { dataset: { order: String(t.order) } }, t.order === null ? 'none (after every ordered tier)' : String(t.order)),
      h('span', {}, 'default'),
      h('span', { dataset: { defaultAction: t.defaultAction } }, t.defaultAction === 'Deny' ? 'Deny: what its rules leave undecided is denied, for the pods its policies select' : 'Pass: what its rules leave undecided goes on to the next tier'),
      t.source ? h('span', {}, 'source') : null,
      t.source ? h('span', { class: 'small' }, t.source) : null,
    ),
    h('div', { class: 'row' }, h('button', { type: 'button', onclick: () => ctx.onEdit(t) }, 'Edit in what-if')),
    h('div', { class: 'section' }, h('h4', {}, `Policies, in order · ${t.policies.length}`)),
    t.policies.length
      ? h('ol', { class: 'rules' }, t.policies.map((p) => h('li', {}, h('a', { class: 'link mono', dataset: { policy: p.policy }, onclick: () => ctx.onPolicy(p.policy) }, p.policy), h('span', { class: 'muted' }, `${rankText(p)} · ${p.kind} · ${plural(p.pods || 0, 'pod')}`))))
      : h('p', { class: 'muted small' }, 'no policy'),
  );
}

/** A walk entry's action in the words of its policy's API (ClusterNetworkPolicy accepts, the others allow). */
function actionWord(m) {
  const a = { allow: 'Allow', deny: 'Deny', pass: 'Pass', log: 'Log' }[m.action] || m.action;
  return m.action === 'allow' && m.policy.startsWith('cnp/') ? 'Accept' : a;
}

/** What a policy reference is, from the policy list when it is known, else from the reference's form. */
function kindOf(ref, ctx) {
  const p = ctx.policies && ctx.policies.get(ref);
  if (p) return p.kind;
  if (calicoRef(ref)) return ref.startsWith('gnp/') ? 'GlobalNetworkPolicy' : 'NetworkPolicy.projectcalico.org';
  if (/^(ciliumnetworkpolicy|ccnp)\//.test(ref)) return ref.startsWith('ccnp/') ? 'CiliumClusterwideNetworkPolicy' : 'CiliumNetworkPolicy';
  return /^(cnp|anp|banp)\//.test(ref) ? 'admin' : 'NetworkPolicy';
}

/** A walk entry's place in its tier: `(order 10)` for Calico's policies, `(priority 5)` for the admin kinds. */
function walkRank(m) {
  if (calicoRef(m.policy)) return ` (order ${m.priority ?? 'none'})`;
  return m.policy.startsWith('banp/') ? '' : priorityText(m.priority);
}

/**
 * One side of an explanation, tier by tier, as `netpol explain` prints it: each tier whose policies select the
 * subject, in evaluation order, with the rules that passed the flow on or decided it (tier → policy (order or
 * priority) → rule → action), or what the tier's end did (its default action), until one decides.
 */
function tieredSide(s, verdict, ctx) {
  const lines = [];
  const isNp = (ref) => kindOf(ref, ctx) === 'NetworkPolicy';
  // The tiers the subject's policies are in, in evaluation order.
  const order = [];
  // A Cilium policy has rules in several tiers (its deny rules in CiliumDeny): the walk's tier comes first.
  const tierOfRef = (ref) => {
    const p = ctx.policies && ctx.policies.get(ref);
    const m = s.walk.find((x) => x.policy === ref);
    return (m && m.tier) || (p && p.tier) || null;
  };
  for (const ref of s.policies) {
    const t = tierOfRef(ref);
    if (t && !order.includes(t)) order.push(t);
  }
  for (const m of s.walk) if (!order.includes(m.tier)) order.push(m.tier);
  if (s.tier_default && !order.includes(s.tier_default)) order.push(s.tier_default);
  const npLine = (tier, pols) =>
    h(
      'li',
      { class: 'step', dataset: { tier, decides: s.decided_by === 'network_policy' ? 'true' : 'false' } },
      tierBadge(tier, tierInfo(ctx.tiers, tier)),
      ` isolated by ${pols.join(', ')}`,
      s.decided_by === 'network_policy' ? h('b', { class: `outcome ${verdict.toLowerCase()}` }, ` → ${verdict}`) : null,
      npDetails(s),
    );
  let decided = false;
  for (const tier of order) {
    if (decided) break;
    const info = tierInfo(ctx.tiers, tier);
    const pols = s.policies.filter((ref) => tierOfRef(ref) === tier);
    const entries = s.walk.filter((m) => m.tier === tier);
    // Kubernetes NetworkPolicies alone in their tier: every matching rule allows; isolation denies the rest.
    if (pols.length && pols.every(isNp)) {
      lines.push(npLine(tier, pols));
      decided = s.decided_by === 'network_policy' || entries.length > 0;
      continue;
    }
    let left = false;
    for (const m of entries) {
      const last = m === s.walk[s.walk.length - 1] && s.decided_by === 'rule';
      // Cilium's own node: the rule that would decide, were it not for the exception shown after the walk.
      const overruled = m === s.walk[s.walk.length - 1] && s.decided_by === 'own_node' && m.action !== 'pass';
      const outcome = m.action === 'pass' ? ' → next tier' : last ? ` → ${verdict}` : overruled ? ' (the policies alone)' : '';
      const dir = m.field.split(/[.[]/)[1] || s.direction;
      lines.push(
        h(
          'li',
          { class: 'step', dataset: { tier: m.tier, policy: m.policy, action: m.action, decides: last ? 'true' : 'false' } },
          tierBadge(m.tier, info),
          ' ',
          h('b', {}, m.policy),
          walkRank(m),
          ` ${dir} rule ${m.rule}`,
          m.name ? h('span', { class: 'mono' }, ` "${m.name}"`) : null,
          ': ',
          h('span', { class: `act ${m.action}` }, actionWord(m)),
          `, ${m.peer === null ? 'any peer' : `peer ${m.peer}`}, ${m.port ? `port ${m.port}` : 'any port'}`,
          outcome ? h('b', { class: `outcome ${m.action === 'pass' ? 'pass' : overruled ? 'deny' : verdict.toLowerCase()}` }, outcome) : null,
          h('div', { class: 'muted small' }, `${m.source}, ${m.field}`),
          // Cilium's L7 rules: which one lets the request through, or which will filter the connection's requests.
          m.l7 ? h('div', { class: 'l7 small' }, m.l7) : null,
        ),
      );
      if (last || overruled) decided = true;
      if (m.action === 'pass') left = true;
    }
    if (decided || left) continue;
    // No rule of the tier decided or passed: its default action.
    if (s.decided_by === 'tier_default' && s.tier_default === tier) {
      lines.push(
        h(
          'li',
          { class: 'step', dataset: { tier, end: 'deny', decides: 'true' } },
          tierBadge(tier, info),
          ` no rule of ${pols.length ? pols.join(', ') : 'the tier'} decides: the tier's default action `,
          h('span', { class: 'act deny' }, 'Deny'),
          h('b', { class: 'outcome deny' }, ' → DENY'),
        ),
      );
      decided = true;
    } else if (s.decided_by === 'own_node' && s.tier_default === tier) {
      // Cilium: what the policies alone would do here (deny), before the own node's exception below.
      lines.push(
        h(
          'li',
          { class: 'step', dataset: { tier, end: 'deny', decides: 'false' } },
          tierBadge(tier, info),
          ` no rule of ${pols.length ? pols.join(', ') : 'the tier'} decides: the policies alone would `,
          h('span', { class: 'act deny' }, 'Deny'),
        ),
      );
      decided = true;
    } else {
      lines.push(
        h(
          'li',
          { class: 'step', dataset: { tier, end: 'pass', decides: 'false' } },
          tierBadge(tier, info),
          ` no rule of ${pols.length ? pols.join(', ') : 'the tier'} matches: `,
          info ? ['the tier\'s default action ', h('span', { class: 'act pass' }, info.defaultAction), ' '] : null,
          h('b', { class: 'outcome pass' }, '→ next tier'),
        ),
      );
    }
  }
  if (s.decided_by === 'own_node') {
    // Cilium lets a pod's own node in whatever the walk above (the policies alone) says.
    lines.push(
      h(
        'li',
        { class: 'step', dataset: { decides: 'true', end: 'own-node' } },
        "from the pod's own node: Cilium lets it in whatever the policies say",
        h('b', { class: 'outcome allow' }, ' → ALLOW'),
      ),
    );
  }
  if (s.decided_by === 'default') {
    const calico = calicoTiers(ctx.tiers);
    lines.push(
      h(
        'li',
        { class: 'step', dataset: { decides: 'true' } },
        'no tier decides',
        h('b', { class: 'outcome allow' }, ' → ALLOW'),
        h('span', { class: 'muted' }, calico ? " (Kubernetes' default: the namespace's profile allows)" : " (Kubernetes' default)"),
      ),
    );
  }
  return h('ol', { class: 'walk' }, lines);
}

/** The NetworkPolicy part of a side: the allowing rules, or why none allows. */
function npDetails(s) {
  const allowing = s.allowed_by.filter((m) => m.tier === 'NetworkPolicy');
  return [
    allowing.length
      ? h(
          'ul',
          {},
          allowing.map((m) =>
            h('li', {}, `allowed by `, h('b', {}, m.policy), ` ${s.direction} rule ${m.rule}`, m.peer === null ? ' (any peer)' : `, peer ${m.peer}`, m.port ? `, port ${m.port}` : ' (any port)'),
          ),
        )
      : null,
    !s.allowed && s.decided_by === 'network_policy' && s.rejections && s.rejections.length
      ? h(
          'ul',
          {},
          s.rejections.map((r) => h('li', {}, h('b', {}, r.policy), r.rule === null ? '' : ` rule ${r.rule}`, `: ${r.reason}`)),
        )
      : null,
  ];
}

/**
 * An explanation object (GET /api/v1/explain). `ctx` (optional): `policies`, a Map from reference to the policy
 * (`GET /api/v1/policies`), and `tiers` (`GET /api/v1/tiers`), to name kinds, tiers, orders and default actions.
 */
export function renderExplanation(x, ctx = {}) {
  const side = (s, title) => {
    const verdict = s.allowed ? 'ALLOW' : 'DENY';
    // Tiers beyond Kubernetes NetworkPolicies (admin kinds, Calico's): the walk, tier by tier; NetworkPolicies
    // alone: the isolating policies and the rules.
    const tiered = s.policies.some((p) => kindOf(p, ctx) !== 'NetworkPolicy') || s.decided_by === 'tier_default';
    return h(
      'div',
      { class: 'side', dataset: { direction: s.direction, decidedBy: s.decided_by || '' } },
      h('div', { class: 'head' }, `${title} at ${s.subject}: `, h('span', { class: s.allowed ? 'iso-yes' : 'iso-no' }, s.allowed ? 'allowed' : 'denied')),
      s.note ? h('div', { class: 'note' }, s.note) : null,
      !s.policies.length && !s.note ? h('div', { class: 'muted' }, `not isolated for ${s.direction}: every flow allowed`) : null,
      tiered && s.walk ? tieredSide(s, verdict, ctx) : null,
      !tiered && s.isolated ? h('div', { class: 'muted' }, `isolated by ${s.policies.join(', ')}`) : null,
      !tiered ? npDetails(s) : null,
      tiered && s.rejections && s.rejections.length && s.decided_by !== 'network_policy'
        ? h(
            'details',
            { class: 'small' },
            h('summary', { class: 'muted' }, `rules that did not match · ${s.rejections.length}`),
            h('ul', {}, s.rejections.map((r) => h('li', { class: r.l7 ? 'l7' : null }, h('b', {}, r.policy), r.field ? ` ${r.field}` : r.rule === null ? '' : ` rule ${r.rule}`, `: ${r.reason}`))),
          )
        : null,
    );
  };
  return h(
    'div',
    { class: 'explanation', dataset: { verdict: x.verdict } },
    h(
      'div',
      {},
      h('span', { class: `verdict ${x.verdict}` }, x.verdict.toUpperCase()),
      h('span', { class: 'mono' }, `${x.src} → ${x.dst}`),
      x.dst_fqdn ? h('span', { class: 'mono fqdn', title: 'the name the destination was resolved from' }, ` (${x.dst_fqdn})`) : null,
      ` on ${x.port}/${x.protocol}`,
      x.request ? h('span', { class: 'mono request', title: 'the request on the connection, judged by Cilium\'s L7 rules' }, `, ${x.request}`) : null,
    ),
    x.note ? h('div', { class: 'note' }, x.note) : null,
    side(x.egress, 'Egress'),
    side(x.ingress, 'Ingress'),
    x.hosts && x.hosts.length ? hostsPart(x, side) : null,
    x.staged ? stagedPart(x, side) : null,
  );
}

/** Where on a host endpoint a check happens (`path` of a host check), in words. */
const HOST_PATHS = {
  'to-host': 'traffic to the host',
  'from-host': 'traffic from the host',
  'forwarded-in': 'traffic forwarded in through the host',
  'forwarded-out': 'traffic forwarded out through the host',
};

/**
 * The Calico host endpoints a flow crosses (`hosts` of an explanation), in packet order: each check with its host
 * endpoint, node and path, whether it lets the flow through, the failsafe port that decided, and each stage
 * (untracked, pre-DNAT, normal or forward policies) as a side of its own, walked tier by tier; then what the
 * answer assumed (`host_note`).
 */
function hostsPart(x, side) {
  return h(
    'div',
    { class: 'hosts' },
    h('div', { class: 'head' }, `Host endpoint checks · ${x.hosts.length}`),
    x.hosts.map((c) =>
      h(
        'div',
        { class: 'host', dataset: { hostEndpoint: c.host_endpoint, path: c.path, allowed: c.allowed ? 'true' : 'false' } },
        h(
          'div',
          {},
          'host endpoint ',
          h('b', {}, c.host_endpoint),
          ` (node ${c.node}), ${HOST_PATHS[c.path] || c.path}: `,
          h('span', { class: c.allowed ? 'iso-yes' : 'iso-no' }, c.allowed ? 'allowed' : 'denied'),
        ),
        c.failsafe ? h('div', { class: 'note failsafe' }, c.failsafe) : null,
        c.stages.map((s) => side(s, s.direction === 'egress' ? 'Egress' : 'Ingress')),
        h('div', { class: 'muted small' }, c.source),
      ),
    ),
    x.host_note ? h('div', { class: 'note host-note' }, x.host_note) : null,
  );
}

/**
 * The staged view of a flow (`staged` of an explanation: the cluster as if its Calico staged policies were
 * enforced): "staged: would allow/deny …", whether that changes the enforced verdict, the staged policies on the
 * flow, and each side's walk in that view.
 */
function stagedPart(x, side) {
  const st = x.staged;
  const same = st.changed ? `changes the enforced ${x.verdict.toUpperCase()}` : 'same as enforced';
  const pols = st.policies.map((p) => `${p.kind} ${p.name} (${p.action})`);
  return h(
    'div',
    { class: 'staged', dataset: { verdict: st.verdict, changed: st.changed ? 'true' : 'false' } },
    h(
      'div',
      {},
      h('span', { class: `verdict ${st.verdict}` }, `staged: would ${st.verdict}`),
      h('span', { class: 'mono' }, ` ${x.src} → ${x.dst}`),
      ` (${same})`,
    ),
    h('div', { class: 'muted small' }, pols.length ? `staged policies on this flow: ${pols.join('; ')}` : 'no staged policy selects either side'),
    st.note ? h('div', { class: 'note' }, st.note) : null,
    h(
      'details',
      { class: 'small' },
      h('summary', { class: 'muted' }, 'the flow if the staged policies were enforced'),
      side(st.egress, 'Egress'),
      side(st.ingress, 'Ingress'),
    ),
  );
}

/** Lint findings, each linking to its object. */
export function renderLint(ul, findings, onPick) {
  const order = { error: 0, warning: 1, info: 2 };
  const sorted = findings.slice().sort((a, b) => (order[a.severity] ?? 3) - (order[b.severity] ?? 3) || a.code.localeCompare(b.code) || a.object.localeCompare(b.object));
  ul.replaceChildren(
    ...sorted.map((f, i) =>
      h(
        'li',
        { title: f.help, dataset: { object: f.object, code: f.code, index: i }, onclick: (ev) => onPick(f, ev.currentTarget) },
        h('span', { class: `sev ${f.severity}` }, f.code),
        h('span', { class: 'msg' }, f.message),
        h('span', { class: 'obj' }, f.object + (f.field ? ` · ${f.field}` : '')),
      ),
    ),
  );
  if (!findings.length) ul.replaceChildren(h('li', { class: 'muted' }, 'no findings'));
}

/**
 * The policy list (in tier order, as the API gives it); `filter` is a substring of the reference, the kind or the
 * tier. With Calico's tiers, each tier gets a heading (order, default action; a click shows the tier).
 */
export function renderPolicies(ul, list, filter, onPick, tiers, onTier) {
  const f = filter.trim().toLowerCase();
  const shown = list.filter((p) => !f || p.ref.toLowerCase().includes(f) || p.kind.toLowerCase().includes(f) || p.tier.toLowerCase().includes(f));
  const calico = calicoTiers(tiers);
  const items = [];
  let tier = null;
  for (const p of shown.slice(0, 500)) {
    const info = tierInfo(tiers, p.tier);
    if (calico && p.tier !== tier) {
      tier = p.tier;
      items.push(
        h(
          'li',
          { class: 'tier-head', dataset: { tierHead: p.tier }, onclick: (ev) => info && onTier && onTier(info, ev.currentTarget) },
          tierBadge(p.tier, info),
          h('span', { class: 'muted small' }, info ? ` order ${info.order ?? 'none'} · default ${info.defaultAction}` : ''),
        ),
      );
    }
    const calicoPolicy = p.selector !== undefined;
    let meta;
    if (calicoPolicy) meta = `${p.kind}${rankText(p)} · ${p.selector} · ${plural(p.selectedPods.length, 'pod')}`;
    else if (p.namespaceSelector !== undefined) meta = `${p.kind}${priorityText(p.priority)} · ns ${p.namespaceSelector} · ${plural(p.selectedPods.length, 'pod')}`;
    else meta = `${p.podSelector}${calico ? rankText(p) : ''} · ${plural(p.selectedPods.length, 'pod')}`;
    items.push(
      h(
        'li',
        { dataset: { policy: p.ref, tier: p.tier }, onclick: (ev) => onPick(p, ev.currentTarget) },
        h('span', { class: 'pname' }, !calico && p.tier !== 'NetworkPolicy' ? [tierBadge(p.tier, info), ' '] : null, p.ref),
        h(
          'span',
          { class: 'pmeta' },
          p.policyTypes.includes('Ingress') ? h('span', { class: 'tag in' }, 'IN') : null,
          p.policyTypes.includes('Egress') ? h('span', { class: 'tag out' }, 'OUT') : null,
          meta,
        ),
      ),
    );
  }
  ul.replaceChildren(...items);
  if (shown.length > 500) ul.append(h('li', { class: 'muted' }, `${shown.length - 500} more: filter to see them`));
}

/** Rows of the edges table (at most `max`), changed edges first in what-if mode. */
export function renderEdgesTable(tbody, edges, nodes, onPick, max = 2000) {
  const rank = { added: 0, removed: 1, changed: 2, unchanged: 3 };
  const list = edges.slice().sort((a, b) => (rank[a.change] ?? 3) - (rank[b.change] ?? 3));
  const rows = list.slice(0, max).map((e) => {
    const pairs = e.pairs ?? e.after;
    const a = nodes.get(e.src);
    const b = nodes.get(e.dst);
    const wi =
      e.change === undefined ? '' : e.change === 'unchanged' ? '' : e.change === 'changed' ? `changed (was ${pairsText(e.before, e.total)})` : e.change;
    return h(
      'tr',
      {
        dataset: { src: e.src, dst: e.dst, pairs, total: e.total, before: e.before ?? '', change: e.change ?? '' },
        onclick: () => onPick(e),
      },
      h('td', {}, nodeLabel(a)),
      h('td', {}, nodeLabel(b)),
      h('td', {}, e.change === 'removed' ? `none (was ${pairsText(e.before, e.total)})` : pairsText(pairs, e.total)),
      h('td', {}, wi),
    );
  });
  tbody.replaceChildren(...rows);
  return list.length - rows.length;
}
