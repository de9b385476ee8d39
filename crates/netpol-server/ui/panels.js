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

function isolationLine(iso, count, dir) {
  if (iso.isolatedPods === 0) {
    return h('span', { class: 'iso-no' }, `not isolated: every ${dir} allowed`);
  }
  const cls = iso.isolatedPods >= count ? 'iso-yes' : 'iso-some';
  // Only admin tiers apply (no NetworkPolicy selects the pods): they are governed, not isolated.
  const word = iso.networkPolicyPods === 0 ? 'governed' : 'isolated';
  const who = iso.isolatedPods >= count ? word : `${iso.isolatedPods} of ${count} pods ${word}`;
  return h('span', {}, h('span', { class: cls }, who), ` by ${iso.policies.join(', ')}`);
}

/** A tier's badge: Admin, NetworkPolicy (NP) or Baseline. */
export function tierBadge(tier) {
  const short = { Admin: 'Admin', NetworkPolicy: 'NP', Baseline: 'Baseline' }[tier] || tier;
  return h('span', { class: `tier ${String(tier).toLowerCase()}`, title: `${tier} tier` }, short);
}

const priorityText = (p) => (p === undefined || p === null ? '' : ` (priority ${p})`);

/** A node's policies in one direction, tier by tier in evaluation order, each with how many pods it applies to. */
function tierList(iso, count, dir, onPolicy) {
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
          tierBadge(t.tier),
          ' ',
          t.policies.map((p, i) => [
            i ? ', ' : null,
            h('a', { class: 'link mono', dataset: { policy: p.policy }, title: p.kind, onclick: () => onPolicy(p.policy) }, p.policy),
            h('span', { class: 'muted' }, `${priorityText(p.priority)}${p.pods !== undefined && p.pods < count ? ` · ${p.pods} of ${count} pods` : ''}`),
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

/** The inspect panel of a node: isolation, who can reach it, where it can go, its pods. */
export function renderNode(el, n, ctx) {
  const { edges, nodes, port, grouping, onNode, onEdge, onExplainPod, onExplainFlow, onFocusNamespace, onPolicy } = ctx;
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
      isolationLine(n.ingress, n.count, 'ingress'),
      h('span', {}, 'egress'),
      isolationLine(n.egress, n.count, 'egress'),
    ),
    n.ingress.tiers.length || n.egress.tiers.length
      ? h(
          'div',
          { class: 'section', id: 'tiers' },
          h('h4', {}, 'Policies, tier by tier'),
          tierList(n.ingress, n.count, 'ingress', onPolicy),
          tierList(n.egress, n.count, 'egress', onPolicy),
          h('p', { class: 'muted small' }, 'evaluated Admin → NetworkPolicy → Baseline; what no tier decides is allowed'),
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

/** A policy's rules of one direction, each with its action, peers and ports. */
function ruleList(p, dir) {
  const rules = dir === 'ingress' ? p.ingressRules : p.egressRules;
  if (!rules || !rules.length) return null;
  const peerWord = dir === 'ingress' ? 'from' : 'to';
  return h(
    'ol',
    { class: 'rules', start: 0, dataset: { direction: dir } },
    rules.map((r) =>
      h(
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
  const cluster = p.namespaceSelector !== undefined;
  fill(
    el,
    h('div', { class: 'title' }, h('span', { class: 'big' }, p.name), h('span', { class: 'muted' }, cluster ? p.ref : p.namespace)),
    h(
      'div',
      { class: 'kv' },
      h('span', {}, 'kind'),
      h('span', { dataset: { kind: p.kind } }, p.kind),
      h('span', {}, 'tier'),
      h('span', {}, tierBadge(p.tier), priorityText(p.priority)),
      h('span', {}, cluster ? 'subject' : 'selector'),
      cluster
        ? h('span', { class: 'mono' }, `namespaces ${p.namespaceSelector}`, h('br'), `pods ${p.podSelector}`)
        : h('span', { class: 'mono' }, p.podSelector),
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

/** A walk entry's action in the words of its policy's API (ClusterNetworkPolicy accepts, the others allow). */
function actionWord(m) {
  const a = { allow: 'Allow', deny: 'Deny', pass: 'Pass', log: 'Log' }[m.action] || m.action;
  return m.action === 'allow' && m.policy.startsWith('cnp/') ? 'Accept' : a;
}

/** One side of an explanation, tier by tier, as `netpol explain` prints it. */
function tieredSide(s, verdict) {
  const lines = [];
  const np = s.policies.filter((p) => !/^(cnp|anp|banp)\//.test(p));
  const npLine = () =>
    h(
      'li',
      { class: 'step', dataset: { tier: 'NetworkPolicy', decides: s.decided_by === 'network_policy' ? 'true' : 'false' } },
      tierBadge('NetworkPolicy'),
      ` isolated by ${np.join(', ')}`,
      s.decided_by === 'network_policy' ? h('b', { class: `outcome ${verdict.toLowerCase()}` }, ` → ${verdict}`) : null,
      npDetails(s),
    );
  let npDone = false;
  s.walk.forEach((m, i) => {
    if (m.tier === 'NetworkPolicy') {
      if (!npDone) lines.push(npLine());
      npDone = true;
      return;
    }
    const last = i + 1 === s.walk.length && s.decided_by === 'rule';
    const outcome = m.action === 'pass' ? ' → next tier' : last ? ` → ${verdict}` : '';
    const dir = m.field.split(/[.[]/)[1] || s.direction;
    lines.push(
      h(
        'li',
        { class: 'step', dataset: { tier: m.tier, policy: m.policy, action: m.action, decides: last ? 'true' : 'false' } },
        tierBadge(m.tier),
        ' ',
        h('b', {}, m.policy),
        m.policy.startsWith('banp/') ? '' : priorityText(m.priority),
        ` ${dir} rule ${m.rule}`,
        m.name ? h('span', { class: 'mono' }, ` "${m.name}"`) : null,
        ': ',
        h('span', { class: `act ${m.action}` }, actionWord(m)),
        `, ${m.peer === null ? 'any peer' : `peer ${m.peer}`}, ${m.port ? `port ${m.port}` : 'any port'}`,
        outcome ? h('b', { class: `outcome ${m.action === 'pass' ? 'pass' : verdict.toLowerCase()}` }, outcome) : null,
        h('div', { class: 'muted small' }, `${m.source}, ${m.field}`),
      ),
    );
  });
  if (s.decided_by === 'network_policy' && !npDone) lines.push(npLine());
  if (s.decided_by === 'default') lines.push(h('li', { class: 'step', dataset: { decides: 'true' } }, 'no tier decides', h('b', { class: 'outcome allow' }, ' → ALLOW'), h('span', { class: 'muted' }, " (Kubernetes' default)")));
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

/** An explanation object (GET /api/v1/explain). */
export function renderExplanation(x) {
  const side = (s, title) => {
    const verdict = s.allowed ? 'ALLOW' : 'DENY';
    const admin = s.policies.some((p) => /^(cnp|anp|banp)\//.test(p));
    return h(
      'div',
      { class: 'side', dataset: { direction: s.direction, decidedBy: s.decided_by || '' } },
      h('div', { class: 'head' }, `${title} at ${s.subject}: `, h('span', { class: s.allowed ? 'iso-yes' : 'iso-no' }, s.allowed ? 'allowed' : 'denied')),
      s.note ? h('div', { class: 'note' }, s.note) : null,
      !s.policies.length && !s.note ? h('div', { class: 'muted' }, `not isolated for ${s.direction}: every flow allowed`) : null,
      // Admin tiers: the walk, tier by tier; NetworkPolicies alone: the isolating policies and the rules.
      admin && s.walk ? tieredSide(s, verdict) : null,
      !admin && s.isolated ? h('div', { class: 'muted' }, `isolated by ${s.policies.join(', ')}`) : null,
      !admin ? npDetails(s) : null,
      admin && s.rejections && s.rejections.length && s.decided_by !== 'network_policy'
        ? h(
            'details',
            { class: 'small' },
            h('summary', { class: 'muted' }, `rules that did not match · ${s.rejections.length}`),
            h('ul', {}, s.rejections.map((r) => h('li', {}, h('b', {}, r.policy), r.rule === null ? '' : ` rule ${r.rule}`, `: ${r.reason}`))),
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
    ),
    x.note ? h('div', { class: 'note' }, x.note) : null,
    side(x.egress, 'Egress'),
    side(x.ingress, 'Ingress'),
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

/** The policy list (in tier order, as the API gives it); `filter` is a substring of the reference or the kind. */
export function renderPolicies(ul, list, filter, onPick) {
  const f = filter.trim().toLowerCase();
  const shown = list.filter((p) => !f || p.ref.toLowerCase().includes(f) || p.kind.toLowerCase().includes(f));
  ul.replaceChildren(
    ...shown.slice(0, 500).map((p) =>
      h(
        'li',
        { dataset: { policy: p.ref, tier: p.tier }, onclick: (ev) => onPick(p, ev.currentTarget) },
        h('span', { class: 'pname' }, p.tier !== 'NetworkPolicy' ? [tierBadge(p.tier), ' '] : null, p.ref),
        h(
          'span',
          { class: 'pmeta' },
          p.policyTypes.includes('Ingress') ? h('span', { class: 'tag in' }, 'IN') : null,
          p.policyTypes.includes('Egress') ? h('span', { class: 'tag out' }, 'OUT') : null,
          p.namespaceSelector !== undefined
            ? `${p.kind}${priorityText(p.priority)} · ns ${p.namespaceSelector} · ${plural(p.selectedPods.length, 'pod')}`
            : `${p.podSelector} · ${plural(p.selectedPods.length, 'pod')}`,
        ),
      ),
    ),
  );
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
