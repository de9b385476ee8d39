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
  for (const c of children.flat()) {
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
  const who = iso.isolatedPods >= count ? 'isolated' : `${iso.isolatedPods} of ${count} pods isolated`;
  return h('span', {}, h('span', { class: cls }, who), ` by ${iso.policies.join(', ')}`);
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
  const { edges, nodes, port, grouping, onNode, onEdge, onExplainPod, onExplainFlow, onFocusNamespace } = ctx;
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

/** The inspect panel of a policy (from the list or a lint finding). */
export function renderPolicy(el, p, ctx) {
  fill(
    el,
    h('div', { class: 'title' }, h('span', { class: 'big' }, p.name), h('span', { class: 'muted' }, p.namespace)),
    h(
      'div',
      { class: 'kv' },
      h('span', {}, 'selector'),
      h('span', { class: 'mono' }, p.podSelector),
      h('span', {}, 'types'),
      h('span', {}, p.policyTypes.join(', ') || 'none'),
      h('span', {}, 'rules'),
      h('span', {}, `${p.rules.ingress} ingress, ${p.rules.egress} egress`),
      h('span', {}, 'selects'),
      h('span', {}, plural(p.selectedPods.length, 'pod')),
    ),
    h('div', { class: 'row' }, h('button', { type: 'button', onclick: () => ctx.onEdit(p) }, 'Edit in what-if'), h('button', { type: 'button', onclick: () => ctx.onDelete(p) }, 'Delete in what-if')),
    p.selectedPods.length ? h('ul', { class: 'pods' }, p.selectedPods.slice(0, 200).map((x) => h('li', {}, x))) : h('p', { class: 'muted small' }, 'selects no pod'),
  );
}

/** An explanation object (GET /api/v1/explain). */
export function renderExplanation(x) {
  const side = (s, title) =>
    h(
      'div',
      { class: 'side', dataset: { direction: s.direction } },
      h('div', { class: 'head' }, `${title} at ${s.subject}: `, h('span', { class: s.allowed ? 'iso-yes' : 'iso-no' }, s.allowed ? 'allowed' : 'denied')),
      s.note ? h('div', { class: 'note' }, s.note) : null,
      !s.isolated && !s.note ? h('div', { class: 'muted' }, `not isolated for ${s.direction}: every flow allowed`) : null,
      s.isolated ? h('div', { class: 'muted' }, `isolated by ${s.policies.join(', ')}`) : null,
      s.allowed_by.length
        ? h(
            'ul',
            {},
            s.allowed_by.map((m) =>
              h('li', {}, `allowed by `, h('b', {}, m.policy), ` ${s.direction} rule ${m.rule}`, m.peer === null ? ' (any peer)' : `, peer ${m.peer}`, m.port ? `, port ${m.port}` : ' (any port)'),
            ),
          )
        : null,
      s.rejections && s.rejections.length
        ? h(
            'ul',
            {},
            s.rejections.map((r) => h('li', {}, h('b', {}, r.policy), r.rule === null ? '' : ` rule ${r.rule}`, `: ${r.reason}`)),
          )
        : null,
    );
  return h(
    'div',
    { class: 'explanation', dataset: { verdict: x.verdict } },
    h('div', {}, h('span', { class: `verdict ${x.verdict}` }, x.verdict.toUpperCase()), h('span', { class: 'mono' }, `${x.src} → ${x.dst}`), ` on ${x.port}/${x.protocol}`),
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

/** The policy list; `filter` is a substring of ns/name. */
export function renderPolicies(ul, list, filter, onPick) {
  const f = filter.trim().toLowerCase();
  const shown = list.filter((p) => !f || `${p.namespace}/${p.name}`.toLowerCase().includes(f));
  ul.replaceChildren(
    ...shown.slice(0, 500).map((p) =>
      h(
        'li',
        { dataset: { policy: `${p.namespace}/${p.name}` }, onclick: (ev) => onPick(p, ev.currentTarget) },
        h('span', { class: 'pname' }, `${p.namespace}/${p.name}`),
        h(
          'span',
          { class: 'pmeta' },
          p.policyTypes.includes('Ingress') ? h('span', { class: 'tag in' }, 'IN') : null,
          p.policyTypes.includes('Egress') ? h('span', { class: 'tag out' }, 'OUT') : null,
          `${p.podSelector} · ${plural(p.selectedPods.length, 'pod')}`,
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
