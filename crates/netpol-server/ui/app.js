// netpol web UI: wires the API, the graph view and the panels. State lives here; graph.js draws, panels.js
// builds DOM. The page exposes `window.__netpol` (timings, node positions) and `body[data-state]` for tests.

import * as api from './api.js';
import { GraphView } from './graph.js';
import {
  fill,
  h,
  nodeLabel,
  pairsText,
  plural,
  renderEdgesTable,
  renderExplanation,
  renderLint,
  renderNode,
  renderPolicies,
  renderPolicy,
  renderTier,
  tierBadge,
} from './panels.js';

const $ = (id) => document.getElementById(id);

const state = {
  params: { port: '', namespace: '', selector: '', group: 'auto' },
  graph: null, // GET /api/v1/graph
  whatif: null, // POST /api/v1/graph/whatif
  flows: null, // POST /api/v1/graph/flows: the flow log overlay
  flowLog: null, // the flow log it was computed from (text, or the chosen File), to recompute it for another view
  nodes: new Map(), // id → node (of the graph shown)
  edges: [], // edges shown (graph edges, or what-if edges with before/after/change)
  policies: [],
  policyByRef: new Map(), // ref → policy (of `policies`)
  tiers: [], // GET /api/v1/tiers, in evaluation order
  lint: [],
  deletes: [],
  selection: null, // {kind: 'node'|'edge'|'policy'|'namespace', ...}
  tableFor: null, // the edges the table was last built for
  revision: '',
};

const perf = { fetchMs: 0, computeMs: 0, layoutMs: 0, drawMs: 0, renderMs: 0, nodes: 0, edges: 0 };
window.__netpol = {
  perf,
  screenPos: (id) => view.screenPos(id),
  edgePos: (src, dst) => view.edgePos(src, dst),
  highlight: () => [...view.state.highlight],
  outsideMarks: () => view.outsideMarks,
  observedPos: (src, dst) => view.edgePos(src, dst, true),
  observedHidden: () => view.observedHidden,
  redraw: () => view.draw(),
  state,
};

const view = new GraphView($('graph'), $('tooltip'), {
  node: (n, shift) => (shift ? pickPeer(n) : selectNode(n)),
  edge: (e) => selectEdge(e),
  observed: (o) => selectObserved(o),
  background: () => clearSelection(),
  nodeTip: (n) => {
    const iso = (x) => (x.isolatedPods === 0 ? 'open' : x.isolatedPods >= n.count ? 'isolated' : `${x.isolatedPods} isolated`);
    const outside = (x, word) => (!x || !x.pods ? null : `${word} outside: ${x.anyPods >= n.count ? 'any address' : [x.anyPods ? 'any address' : null, ...x.blocks].filter(Boolean).join(', ')}`);
    const out = [outside(n.toOutside, 'to'), outside(n.fromOutside, 'from')].filter(Boolean).join(' · ');
    return `${nodeLabel(n)}\n${plural(n.count, 'pod')} · ingress ${iso(n.ingress)} · egress ${iso(n.egress)}${out ? `\n${out}` : ''}\nclick: inspect · shift+click: explain from the selected node`;
  },
  edgeTip: (e) => {
    const a = state.nodes.get(e.src);
    const b = state.nodes.get(e.dst);
    const pairs = e.pairs ?? e.after;
    const change = e.change && e.change !== 'unchanged' ? `\nwhat-if: ${e.change} (before ${e.before}, after ${e.after})` : '';
    const o = observedEdge(e.src, e.dst);
    const seen = o ? `\nflow log: ${observedText(o)}` : '';
    return `${nodeLabel(a)} → ${nodeLabel(b)}\n${pairsText(pairs, e.total)} pod pairs allowed on ${portText()}${change}${seen}\nclick: explain`;
  },
  observedTip: (o) => `${endLabel(o.src, o)} → ${endLabel(o.dst, o)}\nflow log: ${observedText(o)}\nno pod pair allowed on ${portText()}\nclick: explain the observed flow`,
});

function portText() {
  return state.graph ? `${state.graph.port}/${state.graph.protocol}` : state.params.port;
}

function setBusy(s) {
  document.body.dataset.state = s;
}

// ---- URL state ----

function readHash() {
  const q = new URLSearchParams(location.hash.slice(1));
  for (const k of Object.keys(state.params)) {
    if (q.has(k)) state.params[k] = q.get(k);
  }
}

function writeHash() {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(state.params)) if (v && !(k === 'group' && v === 'auto')) q.set(k, v);
  history.replaceState(null, '', `#${q.toString()}`);
}

function graphParams() {
  const p = state.params;
  return { port: p.port, namespace: p.namespace, selector: p.selector, group: p.group === 'auto' ? '' : p.group };
}

// ---- loading ----

async function loadAll() {
  setBusy('loading');
  const t = performance.now();
  try {
    const [g, lint, pols, tiers] = await Promise.all([api.graph(graphParams()), api.lint(), api.policies(), api.tiers()]);
    perf.fetchMs = performance.now() - t;
    state.lint = lint.data;
    state.policies = pols.data;
    state.policyByRef = new Map(state.policies.map((p) => [p.ref, p]));
    state.tiers = tiers.data;
    state.revision = g.revision;
    fillStatic(g.data);
    acceptGraph(g.data);
    renderLint($('lint-list'), state.lint, pickFinding);
    $('lint-count').textContent = String(state.lint.length);
    drawPolicies();
    setBusy('ready');
  } catch (e) {
    showFilterError(e);
    setBusy('error');
  }
}

let graphSeq = 0;

async function reloadGraph() {
  const seq = ++graphSeq;
  setBusy('loading');
  showFilterError(null);
  const t = performance.now();
  try {
    const g = await api.graph(graphParams());
    if (seq !== graphSeq) return; // a newer request is on its way
    perf.fetchMs = performance.now() - t;
    acceptGraph(g.data);
    // A what-if re-runs the flow overlay itself (against its policies).
    if (state.whatif) await runWhatIf();
    else if (state.flowLog) await runFlows(false);
    setBusy('ready');
  } catch (e) {
    if (seq !== graphSeq) return;
    showFilterError(e);
    setBusy('error');
  }
}

function showFilterError(e) {
  const el = $('filter-error');
  if (!e) {
    el.textContent = '';
    return;
  }
  const field = e.body && e.body.field ? `${e.body.field}: ` : '';
  el.textContent = `${field}${e.message}`;
}

/** Namespaces, ports and the model line: from the first graph answer. */
function fillStatic(g) {
  const ns = $('namespace');
  ns.replaceChildren(h('option', { value: '' }, 'all'), ...g.namespaces.map((n) => h('option', { value: n }, n)));
  ns.value = state.params.namespace;
  $('port-list').replaceChildren(...g.ports.map((p) => h('option', { value: p.port }, `${p.names.join(', ')} · ${plural(p.pods, 'pod')}`)));
  const cni = g.cni ? ` · cni: ${g.cni.name} (${g.cni.auto === null ? '--cni' : `auto: ${g.cni.auto}`})` : '';
  $('model-info').textContent = `revision ${state.revision}${cni} · ${plural(g.totalPods, 'pod')} · ${plural(state.policies.length, 'policy').replace('policys', 'policies')}`;
  const names = state.policies.map((p) => p.ref);
  $('policy-names').replaceChildren(...names.map((n) => h('option', { value: n })));
  // Calico's tiers can be edited too (`tier:NAME`), after the policies.
  const tiers = state.tiers.some((t) => !['Admin', 'NetworkPolicy', 'Baseline'].includes(t.name)) ? state.tiers : [];
  $('wi-load').replaceChildren(
    h('option', { value: '' }, 'edit a loaded policy…'),
    ...names.map((n) => h('option', { value: n }, n)),
    ...tiers.map((t) => h('option', { value: `tier:${t.name}` }, `Tier ${t.name}`)),
  );
}

function acceptGraph(g) {
  state.graph = g;
  state.params.port = `${g.port}/${g.protocol}`;
  $('port').value = state.params.port;
  $('grouping').value = state.params.group;
  $('ex-port').value = state.params.port;
  perf.computeMs = g.computeMs;
  writeHash();
  const pods = [];
  for (const n of g.nodes) for (const p of n.pods) pods.push(`${n.namespace}/${p}`);
  $('pod-list').replaceChildren(...pods.slice(0, 5000).map((p) => h('option', { value: p })));
  showGraph();
}

/** Draws the graph, or the what-if graph when one is active; measures layout and drawing. */
function showGraph() {
  const t = performance.now();
  const wi = state.whatif;
  const nodes = wi ? wi.nodes : state.graph.nodes;
  const edges = wi ? wi.edges : state.graph.edges;
  state.nodes = new Map(nodes.map((n) => [n.id, n]));
  state.edges = edges;
  perf.layoutMs = view.setData(nodes, edges);
  view.state.changes = wi ? true : null;
  view.state.port = portText();
  // Keep the selection if its object is still there.
  const sel = state.selection;
  if (sel && sel.kind === 'node' && !state.nodes.has(sel.id)) clearSelection(false);
  perf.drawMs = view.draw();
  perf.renderMs = performance.now() - t;
  perf.nodes = nodes.length;
  perf.edges = edges.length;
  document.body.classList.toggle('whatif', Boolean(wi));
  $('edge-count').textContent = `(${edges.length.toLocaleString('en-US')})`;
  state.tableFor = null;
  if ($('edges-details').open) drawTable();
  const g = state.graph;
  const fl = state.flows ? ` · flow log: ${plural(view.observed.length, 'observed edge')}${view.observedHidden ? ` (${view.observedHidden} off the graph)` : ''}` : '';
  $('status').textContent =
    `${plural(g.focusPods, 'pod')} in ${plural(nodes.length, 'node')} (by ${g.grouping}) · ${plural(edges.length, 'edge')} on ${portText()}${fl} · ` +
    `server ${(wi ? wi.computeMs : g.computeMs).toFixed(1)} ms · render ${perf.renderMs.toFixed(1)} ms`;
  if (sel && sel.kind === 'node' && state.nodes.has(sel.id)) selectNode(state.nodes.get(sel.id), false);
}

function drawTable() {
  if (state.tableFor === state.edges) return;
  state.tableFor = state.edges;
  const more = renderEdgesTable($('edges-table').tBodies[0], state.edges, state.nodes, (e) => selectEdge(e));
  $('edge-note').textContent = more > 0 ? `first 2,000 rows shown; ${more.toLocaleString('en-US')} more: narrow with the filters` : '';
}

// ---- selection ----

function showTab(name) {
  for (const b of document.querySelectorAll('.tabs button')) b.setAttribute('aria-selected', String(b.dataset.tab === name));
  $('tab-inspect').hidden = name !== 'inspect';
  $('tab-whatif').hidden = name !== 'whatif';
  $('tab-flows').hidden = name !== 'flows';
}

function shownEdges() {
  return state.edges.filter((e) => (e.pairs ?? e.after) > 0);
}

function selectNode(n, switchTab = true) {
  const t = performance.now();
  state.selection = { kind: 'node', id: n.id };
  view.setState({ selected: n.id, peer: null, edge: null, observed: null, highlight: new Set() });
  renderNode($('inspect'), n, {
    edges: shownEdges(),
    nodes: state.nodes,
    port: portText(),
    grouping: state.graph.grouping,
    tiers: state.tiers,
    onNode: (m) => selectNode(m),
    onFocusNamespace: (ns) => {
      state.params.namespace = ns;
      state.params.group = 'auto';
      $('namespace').value = ns;
      $('grouping').value = 'auto';
      view.moved = false;
      reloadGraph();
    },
    onEdge: (e) => selectEdge(e),
    onPolicy: (ref) => {
      const p = state.policyByRef.get(ref);
      if (p) selectPolicy(p, null);
    },
    onExplainPod: (p) => {
      $('ex-src').value = p;
      $('ex-dst').focus();
    },
    onExplainFlow: ([src, dst]) => {
      $('ex-src').value = src;
      $('ex-dst').value = dst;
      runExplain();
    },
  });
  if (!$('ex-src').value || switchTab) $('ex-src').value = n.pods.length ? `${n.namespace}/${n.pods[0]}` : '';
  if (switchTab) showTab('inspect');
  markList(null);
  perf.selectMs = performance.now() - t;
}

/** Shift+click: explain from the selected node's first pod to this node's first pod. */
function pickPeer(n) {
  const sel = state.selection;
  if (!sel || sel.kind !== 'node') return selectNode(n);
  const a = state.nodes.get(sel.id);
  if (!a) return selectNode(n);
  const e = state.edges.find((x) => x.src === a.id && x.dst === n.id && x.example);
  const src = e ? e.example[0] : `${a.namespace}/${a.pods[0]}`;
  let dst = e ? e.example[1] : `${n.namespace}/${n.pods[0]}`;
  if (dst === src && n.pods.length > 1) dst = `${n.namespace}/${n.pods[1]}`;
  view.setState({ peer: n.id });
  $('ex-src').value = src;
  $('ex-dst').value = dst;
  showTab('inspect');
  runExplain();
}

async function selectEdge(e) {
  state.selection = { kind: 'edge', src: e.src, dst: e.dst };
  const o = observedEdge(e.src, e.dst);
  const key = `${e.src}\u0000${e.dst}`;
  view.setState({ selected: null, peer: null, edge: key, observed: o ? key : null, highlight: new Set() });
  showTab('inspect');
  markList(null);
  const a = state.nodes.get(e.src);
  const b = state.nodes.get(e.dst);
  const pairs = e.pairs ?? e.after;
  const cause = state.whatif && e.example ? diffCause(e.example) : null;
  fill($('inspect'), 
    h('div', { class: 'title' }, h('span', { class: 'big' }, 'Edge'), h('span', { class: 'muted' }, portText())),
    h('p', {}, h('a', { class: 'link', onclick: () => a && selectNode(a) }, nodeLabel(a)), ' → ', h('a', { class: 'link', onclick: () => b && selectNode(b) }, nodeLabel(b))),
    h('p', {}, `${pairsText(pairs, e.total)} ordered pod pairs allowed`, e.change && e.change !== 'unchanged' ? h('b', { class: e.change }, ` · what-if: ${e.change} (was ${e.before})`) : null),
    cause ? h('p', { class: 'cause' }, `what-if cause: ${cause}`) : null,
    o ? h('p', { class: o.deniedAny ? 'observed-note denied' : 'observed-note' }, `flow log: ${observedText(o)}`, ' · ', h('a', { class: 'link', onclick: () => selectObserved(o) }, 'explain the observed flow')) : null,
    e.example ? h('p', { class: 'muted small' }, `explaining ${e.example[0]} → ${e.example[1]}${state.whatif ? ' with the loaded policies' : ''}:`) : h('p', { class: 'muted small' }, 'no pair to explain'),
  );
  if (e.example) {
    $('ex-src').value = e.example[0];
    $('ex-dst').value = e.example[1];
    await runExplain();
  }
}

function diffCause([src, dst]) {
  const g = state.whatif.diff.groups.find((x) => x.sources.includes(src) && x.destinations.includes(dst));
  return g ? `${g.change.replace('_', ' ')} on ${g.ports}: ${g.cause}` : null;
}

function clearSelection(redraw = true) {
  state.selection = null;
  view.state.selected = null;
  view.state.peer = null;
  view.state.edge = null;
  view.state.observed = null;
  view.state.highlight = new Set();
  if (redraw) view.draw();
  markList(null);
}

function markList(li) {
  for (const x of document.querySelectorAll('.list li.selected')) x.classList.remove('selected');
  if (li) {
    li.classList.add('selected');
    li.scrollIntoView({ block: 'nearest' });
  }
}

/** Node ids holding any of these pods (`ns/pod`). */
function nodesOfPods(pods) {
  const want = new Set(pods);
  const out = new Set();
  for (const n of state.nodes.values()) {
    if (n.pods.some((p) => want.has(`${n.namespace}/${p}`))) out.add(n.id);
  }
  return out;
}

function selectPolicy(p, li) {
  state.selection = { kind: 'policy', ref: p.ref };
  view.setState({ selected: null, peer: null, edge: null, observed: null, highlight: nodesOfPods(p.selectedPods) });
  renderPolicy($('inspect'), p, { tiers: state.tiers, onEdit: (x) => editPolicy(x.ref), onDelete: (x) => addDelete(x.ref) });
  showTab('inspect');
  markList(li || document.querySelector(`#policy-list li[data-policy="${CSS.escape(p.ref)}"]`));
}

/** A tier (Calico's): its order, default action and policies; the pods its policies select are highlighted. */
function selectTier(t, li) {
  state.selection = { kind: 'tier', name: t.name };
  const pods = state.policies.filter((p) => p.tier === t.name).flatMap((p) => p.selectedPods);
  view.setState({ selected: null, peer: null, edge: null, observed: null, highlight: nodesOfPods(pods) });
  renderTier($('inspect'), t, {
    onEdit: (x) => editPolicy(`tier:${x.name}`),
    onPolicy: (ref) => {
      const p = state.policyByRef.get(ref);
      if (p) selectPolicy(p, null);
    },
  });
  showTab('inspect');
  markList(li || document.querySelector(`#policy-list li[data-tier-head="${CSS.escape(t.name)}"]`));
}

function pickFinding(f, li) {
  const [kind, ...rest] = f.object.split(' ');
  const name = rest.join(' ');
  // A namespaced policy is named by its reference (`NetworkPolicy ns/name`, `NetworkPolicy
  // caliconetworkpolicy/ns/name`), a cluster-scoped one by its kind and name.
  const p = kind === 'NetworkPolicy' ? state.policyByRef.get(name) : state.policies.find((x) => x.kind === kind && x.name === name && !x.namespace);
  if (p) {
    selectPolicy(p, null);
    markList(li);
    return;
  }
  if (kind === 'Namespace') {
    const ids = new Set([...state.nodes.values()].filter((n) => n.namespace === name).map((n) => n.id));
    state.selection = { kind: 'namespace', name };
    view.setState({ selected: null, peer: null, edge: null, observed: null, highlight: ids });
    const list = [...state.nodes.values()].filter((n) => n.namespace === name);
    fill($('inspect'), 
      h('div', { class: 'title' }, h('span', { class: 'big' }, name), h('span', { class: 'muted' }, 'namespace')),
      h('p', { class: 'small' }, f.message),
      h('p', { class: 'muted small' }, f.help),
      h('ul', { class: 'peers' }, list.map((n) => h('li', {}, h('a', { onclick: () => selectNode(n) }, n.name), h('span', { class: 'muted' }, ` · ${plural(n.count, 'pod')}`)))),
    );
    showTab('inspect');
  }
  markList(li);
}

function drawPolicies() {
  $('policy-count').textContent = String(state.policies.length);
  renderPolicies($('policy-list'), state.policies, $('policy-filter').value, selectPolicy, state.tiers, selectTier);
}

// ---- explain ----

/** What explanations are rendered with: the loaded policies (kinds, tiers) and tiers (orders, default actions). */
function explainCtx() {
  return { policies: state.policyByRef, tiers: state.tiers };
}

async function runExplain() {
  const out = $('explain');
  const src = $('ex-src').value.trim();
  const dst = $('ex-dst').value.trim();
  const port = $('ex-port').value.trim() || portText();
  const fqdn = $('ex-fqdn').value.trim();
  if (!src || !dst) {
    out.replaceChildren(h('div', { class: 'error' }, 'give a source and a destination'));
    return;
  }
  out.replaceChildren(h('p', { class: 'muted small' }, 'explaining…'));
  try {
    const r = await api.explain(src, dst, port, fqdn);
    out.replaceChildren(renderExplanation(r.data, explainCtx()));
  } catch (e) {
    fill(out, h('div', { class: 'error' }, e.body && e.body.field ? h('span', { class: 'field' }, `${e.body.field}: `) : null, e.message));
  }
}

// ---- what-if ----

const editor = $('editor');
const LINE = 18;
const PAD = 6;
let errorLine = 0;

function drawGutter() {
  const n = editor.value.split('\n').length;
  const g = $('gutter');
  const lines = [];
  for (let i = 1; i <= n; i++) lines.push(i === errorLine ? h('span', { class: 'bad' }, String(i)) : String(i), '\n');
  g.replaceChildren(...lines);
  g.scrollTop = editor.scrollTop;
  placeErrorLine();
}

function placeErrorLine() {
  const band = $('errline');
  if (!errorLine) {
    band.hidden = true;
    return;
  }
  const top = PAD + (errorLine - 1) * LINE - editor.scrollTop;
  band.hidden = top < -LINE || top > editor.clientHeight;
  band.style.top = `${top + 1}px`;
}

function showWhatIfError(e) {
  const box = $('whatif-error');
  if (!e) {
    box.hidden = true;
    box.replaceChildren();
    errorLine = 0;
    drawGutter();
    return;
  }
  const b = e.body || {};
  errorLine = b.line || 0;
  box.hidden = false;
  box.dataset.field = b.field || '';
  box.dataset.line = b.line || '';
  fill(
    box,
    b.line ? h('b', {}, `line ${b.line}`) : null,
    b.line ? ' · ' : null,
    b.field ? h('span', { class: 'field' }, b.field) : null,
    b.field ? ': ' : null,
    e.message,
  );
  drawGutter();
  if (b.line) {
    const top = PAD + (b.line - 1) * LINE;
    if (top < editor.scrollTop || top > editor.scrollTop + editor.clientHeight - LINE) editor.scrollTop = Math.max(0, top - 3 * LINE);
    placeErrorLine();
  }
}

async function runWhatIf() {
  const text = editor.value;
  const res = $('whatif-result');
  if (!text.trim() && !state.deletes.length) {
    showWhatIfError({
      message:
        'paste a policy (NetworkPolicy, ClusterNetworkPolicy, AdminNetworkPolicy, BaselineAdminNetworkPolicy; Calico NetworkPolicy, GlobalNetworkPolicy, Tier, NetworkSet, GlobalNetworkSet; CiliumNetworkPolicy, CiliumClusterwideNetworkPolicy), or add a policy to delete',
      body: {},
    });
    return;
  }
  res.dataset.state = 'loading';
  try {
    const t = performance.now();
    const r = await api.whatIf(text, { ...graphParams(), port: state.params.port, delete: state.deletes });
    perf.whatIfFetchMs = performance.now() - t;
    showWhatIfError(null);
    state.whatif = r.data;
    showGraph();
    renderWhatIf(r.data);
    if (state.flowLog) await runFlows(false);
    perf.whatIfMs = performance.now() - t;
    res.dataset.state = 'ready';
  } catch (e) {
    // Nothing to preview: drop the previous preview, so the graph shows the loaded policies.
    if (state.whatif) clearWhatIf();
    showWhatIfError(e);
    res.dataset.state = 'error';
  }
}

/** A diff group's representative flow, explained before and after (tier by tier), folded: built when opened. */
function causeDetail(d) {
  if (!d || !d.old || !d.new) return null;
  const box = h('div', {});
  const el = h('details', { class: 'small cause-detail' }, h('summary', { class: 'muted' }, 'the walk before and after'), box);
  el.addEventListener('toggle', () => {
    if (!el.open || box.childElementCount) return;
    fill(box, h('div', { class: 'muted' }, 'before:'), renderExplanation(d.old, explainCtx()), h('div', { class: 'muted' }, 'after:'), renderExplanation(d.new, explainCtx()));
  });
  return el;
}

/** The what-if diff's changes with addresses outside the cluster (no policy applies on their side). */
function outsideDiff(outside, names) {
  if (!outside.length) return null;
  const addrs = (g) => `outside ${names(g.addresses)}`;
  return h(
    'div',
    { id: 'whatif-outside' },
    h('h3', { class: 'section' }, `With addresses outside the cluster · ${plural(outside.length, 'group')}`),
    outside.slice(0, 30).map((g) =>
      h(
        'div',
        { class: 'diffgroup', dataset: { change: g.change, direction: g.direction } },
        h('div', { class: g.change === 'newly_allowed' ? 'iso-yes' : 'iso-no' }, `${g.change.replace('_', ' ')} on ${g.ports} · ${plural(g.pods.length, 'pod')}`),
        h('div', { class: 'small mono' }, g.direction === 'egress' ? `${names(g.pods)} → ${addrs(g)}` : `${addrs(g)} → ${names(g.pods)}`),
        h('div', { class: 'cause' }, g.cause),
        causeDetail(g.cause_detail),
      ),
    ),
  );
}

function renderWhatIf(w) {
  const count = (c) => w.edges.filter((e) => e.change === c).length;
  const [added, removed, changed] = [count('added'), count('removed'), count('changed')];
  const badge = $('whatif-badge');
  badge.hidden = false;
  badge.textContent = `+${added} −${removed}`;
  const changes = w.edges.filter((e) => e.change !== 'unchanged');
  const port = `${w.port}/${w.protocol}`;
  const groups = w.diff.groups;
  const onPort = groups.filter((g) => portInSet(g.ports, w.port, w.protocol));
  const names = (list) => (list.length > 3 ? `${list.slice(0, 3).join(', ')} +${list.length - 3}` : list.join(', '));
  const parts = [
    h('div', { class: 'summary', dataset: { added, removed, changed } }, h('span', { class: 'added' }, `+${added} added`), h('span', { class: 'removed' }, `−${removed} removed`), h('span', { class: 'changed' }, `~${changed} changed`), h('span', { class: 'muted' }, `on ${port}`)),
    h(
      'ul',
      { class: 'changes' },
      changes.map((e) =>
        h(
          'li',
          { class: e.change, dataset: { src: e.src, dst: e.dst, change: e.change }, onclick: () => selectEdge(e) },
          `${e.change === 'added' ? '+' : e.change === 'removed' ? '−' : '~'} ${nodeLabel(state.nodes.get(e.src))} → ${nodeLabel(state.nodes.get(e.dst))}`,
          h('span', { class: 'muted' }, ` (${e.before} → ${e.after} of ${e.total} pairs)`),
        ),
      ),
    ),
    changes.length ? null : h('p', { class: 'muted small' }, `no edge changes on ${port}`),
    h('h3', { class: 'section' }, 'Policies'),
    h(
      'ul',
      { class: 'peers' },
      w.applied.map((a) =>
        h(
          'li',
          { dataset: { policy: a.policy, kind: a.kind, tier: a.tier } },
          a.tier && a.tier !== 'NetworkPolicy' ? [tierBadge(a.tier, state.tiers.find((t) => t.name === a.tier)), ' '] : null,
          h('span', { class: 'mono' }, a.policy),
          ` · ${a.kind} · ${a.replaces ? 'replaces the loaded policy' : 'new'} · selects ${plural(a.selectedPods, 'pod')}`,
        ),
      ),
      w.deleted.map((d) => h('li', {}, h('span', { class: 'mono' }, d), ' · deleted')),
    ),
    h('h3', { class: 'section' }, `Connectivity diff, every port · ${plural(groups.length, 'group')}`),
    groups.length ? null : h('p', { class: 'muted small' }, 'no flow changes on any port'),
    h(
      'div',
      {},
      groups.slice(0, 30).map((g) =>
        h(
          'div',
          { class: 'diffgroup' },
          h('div', { class: g.change === 'newly_allowed' ? 'iso-yes' : 'iso-no' }, `${g.change.replace('_', ' ')} on ${g.ports} · ${plural(g.pairs, 'pair')}${onPort.includes(g) ? '' : ' (other ports)'}`),
          h('div', { class: 'small mono' }, `${names(g.sources)} → ${names(g.destinations)}`),
          h('div', { class: 'cause' }, g.cause),
          causeDetail(g.cause_detail),
        ),
      ),
    ),
    outsideDiff(w.diff.outside || [], names),
  ];
  $('whatif-result').replaceChildren(...parts.filter(Boolean));
}

/** Whether a diff port-set text (`TCP 80,8000-8080; UDP 53`, `all`, `none`) holds port/protocol. */
function portInSet(text, port, proto) {
  if (text === 'all') return true;
  for (const part of text.split(';')) {
    const [p, ranges] = part.trim().split(/\s+/, 2);
    if (p !== proto || !ranges) continue;
    if (ranges === 'all') return true;
    for (const r of ranges.split(',')) {
      const [lo, hi] = r.split('-').map(Number);
      if (port >= lo && port <= (hi || lo)) return true;
    }
  }
  return false;
}

function clearWhatIf() {
  state.whatif = null;
  $('whatif-badge').hidden = true;
  $('whatif-result').replaceChildren();
  delete $('whatif-result').dataset.state;
  showWhatIfError(null);
  showGraph();
  if (state.flowLog) runFlows(false);
}

async function editPolicy(ref) {
  try {
    const r = ref.startsWith('tier:') ? await api.tierManifest(ref.slice(5)) : await api.manifest(ref);
    editor.value = editor.value.trim() ? `${editor.value.trimEnd()}\n---\n${r.data}` : r.data;
    drawGutter();
    showTab('whatif');
    editor.focus();
  } catch (e) {
    showWhatIfError(e);
  }
}

function addDelete(ref) {
  ref = ref.trim();
  if (!ref || state.deletes.includes(ref)) return;
  state.deletes.push(ref);
  drawDeletes();
  showTab('whatif');
}

function drawDeletes() {
  $('wi-deletes').replaceChildren(
    ...state.deletes.map((d) =>
      h('span', { class: 'chip' }, d, h('button', { type: 'button', title: 'keep this policy', onclick: () => {
        state.deletes = state.deletes.filter((x) => x !== d);
        drawDeletes();
      } }, '×')),
    ),
  );
}

// ---- flow log overlay ----

/** The observed edge between two node ids (null: outside the cluster), if the overlay has one. */
function observedEdge(src, dst) {
  return state.flows ? state.flows.edges.find((o) => o.src === src && o.dst === dst) || null : null;
}

/** A node of the overlay by id: its label; null: the outside addresses the edge saw. */
function endLabel(id, o) {
  if (id === null) {
    const more = o.addresses.length >= 10 ? ', …' : '';
    return `outside (${o.addresses.join(', ')}${more})`;
  }
  const n = state.nodes.get(id);
  return n ? nodeLabel(n) : id;
}

/** What the log and the model say of an observed edge, in one line. */
function observedText(o) {
  const parts = [];
  if (o.allowed) parts.push(`${o.allowed} allowed`);
  if (o.denied) parts.push(`${o.denied} denied`);
  if (o.mixed) parts.push(`${o.mixed} both`);
  if (o.seen) parts.push(`${o.seen} without verdict`);
  const model = o.modelDenied ? `the policies deny ${o.modelDenied}` : 'the policies allow all';
  const disagree = o.modelAgrees ? '' : ` · log and policies disagree on ${o.disagreements}`;
  const wi = [o.newlyDenied ? `the what-if would deny ${o.newlyDenied}` : null, o.newlyAllowed ? `the what-if would allow ${o.newlyAllowed}` : null].filter(Boolean);
  return `${plural(o.connections, 'connection')} on ${o.ports.join(', ')} (log: ${parts.join(', ')}; ${model})${disagree}${wi.length ? ` · ${wi.join(', ')}` : ''}`;
}

function showFlowsError(e) {
  const box = $('flows-error');
  if (!e) {
    box.hidden = true;
    box.replaceChildren();
    return;
  }
  box.hidden = false;
  fill(box, e.body && e.body.field ? h('span', { class: 'field' }, `${e.body.field}: `) : null, e.message);
}

/** Sends the chosen file (else the pasted text) to POST /api/v1/graph/flows for the graph shown, and draws it. */
async function runFlows(fromInputs = true) {
  const res = $('flows-result');
  if (fromInputs) {
    const file = $('fl-file').files[0];
    const text = $('fl-text').value;
    state.flowLog = file || (text.trim() ? text : null);
  }
  if (!state.flowLog) {
    showFlowsError({ message: 'choose a flow log file or paste one', body: {} });
    return;
  }
  res.dataset.state = 'loading';
  try {
    const p = graphParams();
    const params = {
      group: state.graph.grouping,
      namespace: p.namespace,
      selector: p.selector,
      port: $('fl-port').checked ? portText() : '',
    };
    const t = performance.now();
    // With a what-if preview on, the log is judged against its policies too: the observed traffic it would cut.
    const whatif = state.whatif ? { text: editor.value, delete: state.deletes } : null;
    const r = await api.graphFlows(state.flowLog, params, whatif);
    perf.flowsMs = performance.now() - t;
    showFlowsError(null);
    state.flows = r.data;
    document.body.classList.add('flows');
    view.setObserved(r.data.edges);
    showGraph();
    renderFlows(r.data);
    res.dataset.state = 'ready';
  } catch (e) {
    if (state.flows) dropFlows();
    showFlowsError(e);
    res.dataset.state = 'error';
  }
}

function dropFlows() {
  state.flows = null;
  document.body.classList.remove('flows');
  view.setObserved(null);
  $('flows-badge').hidden = true;
  $('flows-result').replaceChildren();
  showGraph();
}

function clearFlows() {
  state.flowLog = null;
  $('fl-file').value = '';
  delete $('flows-result').dataset.state;
  showFlowsError(null);
  dropFlows();
}

function renderFlows(f) {
  const c = f.counts;
  const denied = f.edges.filter((o) => o.deniedAny).length;
  const disagree = f.edges.filter((o) => !o.modelAgrees).length;
  const cut = f.edges.reduce((n, o) => n + o.newlyDenied, 0);
  // With a what-if, the edges it would cut first (the server's order otherwise: denied first).
  const edges = f.whatif ? [...f.edges].sort((a, b) => (b.newlyDenied > 0) - (a.newlyDenied > 0)) : f.edges;
  const badge = $('flows-badge');
  badge.hidden = false;
  badge.textContent = denied ? `${denied} denied` : String(f.edges.length);
  const drawn = new Set(view.observed.map((it) => it.key));
  const counts = [
    `${plural(c.lines, 'line')}`,
    c.errorLines ? `${c.errorLines} unreadable` : null,
    c.skippedLines ? `${c.skippedLines} without a flow` : null,
    `${plural(c.flows, 'flow')} (${plural(c.connections, 'connection')})`,
    c.unresolved ? `${c.unresolved} unresolved` : null,
    c.otherPorts ? `${c.otherPorts} on other ports` : null,
    c.outsideFocus ? `${c.outsideFocus} outside the focus` : null,
  ].filter(Boolean);
  const problems = (title, list, total) =>
    list.length
      ? [
          h('h3', { class: 'section' }, `${title} · ${total}`),
          h('ul', { class: 'problems' }, list.slice(0, 20).map((x) => h('li', {}, `${x.file}:${x.line}: ${x.message}`))),
          total > 20 ? h('p', { class: 'muted small' }, `… and ${total - 20} more (POST /api/v1/flows/replay lists every one)`) : null,
        ]
      : null;
  fill(
    $('flows-result'),
    h(
      'div',
      { class: 'summary', dataset: { edges: f.edges.length, denied, disagree, cut } },
      h('span', { class: 'observed' }, plural(f.edges.length, 'observed edge')),
      h('span', { class: 'denied' }, `${denied} denied`),
      h('span', { class: 'disagree' }, `${disagree} where log and policies disagree`),
      h('span', { class: 'muted' }, f.port ? `on ${f.port}` : 'every port'),
    ),
    f.whatif
      ? h('p', { class: cut ? 'observed-note denied' : 'observed-note' }, cut ? `the what-if would cut ${plural(cut, 'observed connection')}` : 'the what-if cuts no observed connection')
      : null,
    h('p', { class: 'muted small' }, counts.join(' · ')),
    view.observedHidden ? h('p', { class: 'muted small' }, `${plural(view.observedHidden, 'edge')} not drawn: a node not on the graph (narrow or widen the filters)`) : null,
    h(
      'ul',
      { class: 'observed-list' },
      edges.slice(0, 300).map((o) =>
        h(
          'li',
          {
            class: [o.deniedAny ? 'denied' : '', o.newlyDenied ? 'cut' : '', drawn.has(`${o.src}\u0000${o.dst}`) ? '' : 'offgraph'].filter(Boolean).join(' ') || null,
            dataset: { src: o.src ?? '', dst: o.dst ?? '', denied: String(o.deniedAny), cut: String(o.newlyDenied) },
            onclick: () => selectObserved(o),
          },
          `${endLabel(o.src, o)} → ${endLabel(o.dst, o)}`,
          h('span', { class: 'why' }, observedText(o)),
        ),
      ),
    ),
    f.edges.length > 300 ? h('p', { class: 'muted small' }, `first 300 of ${f.edges.length} shown`) : null,
    problems('Unreadable lines', f.errors, c.errorLines),
    problems('Not judged (ends not in the cluster)', f.unresolved, c.unresolved),
  );
}

/** An observed edge: what the log and the model say, and the explanation of its example flow. */
async function selectObserved(o) {
  state.selection = { kind: 'observed', src: o.src, dst: o.dst };
  view.setState({ selected: null, peer: null, edge: null, observed: `${o.src}\u0000${o.dst}`, highlight: new Set([o.src, o.dst].filter((x) => x !== null)) });
  showTab('inspect');
  markList(null);
  const end = (id) => {
    const n = id === null ? null : state.nodes.get(id);
    return n ? h('a', { class: 'link', onclick: () => selectNode(n) }, nodeLabel(n)) : endLabel(id, o);
  };
  const ex = o.example;
  fill(
    $('inspect'),
    h('div', { class: 'title' }, h('span', { class: 'big' }, 'Observed'), h('span', { class: 'muted' }, o.ports.join(', '))),
    h('p', {}, end(o.src), ' → ', end(o.dst)),
    h('p', { class: o.deniedAny ? 'observed-note denied' : 'observed-note' }, `flow log: ${observedText(o)}`),
    h('p', { class: 'muted small' }, `explaining ${ex.src} → ${ex.dst} on ${ex.port} (logged ${ex.observed} at ${ex.file}:${ex.line}; the policies ${ex.model}):`),
  );
  $('ex-src').value = ex.src;
  $('ex-dst').value = ex.dst;
  $('ex-port').value = ex.port;
  await runExplain();
}

// ---- wiring ----

$('filters').addEventListener('submit', (ev) => {
  ev.preventDefault();
  state.params.port = $('port').value.trim();
  state.params.namespace = $('namespace').value;
  state.params.selector = $('selector').value.trim();
  state.params.group = $('grouping').value;
  view.moved = false;
  reloadGraph();
});
$('namespace').addEventListener('change', () => $('filters').requestSubmit());
$('grouping').addEventListener('change', () => $('filters').requestSubmit());
$('fit').addEventListener('click', () => view.fit());
$('edges-details').addEventListener('toggle', () => $('edges-details').open && drawTable());
$('policy-filter').addEventListener('input', drawPolicies);
for (const b of document.querySelectorAll('.tabs button')) b.addEventListener('click', () => showTab(b.dataset.tab));
$('ex-run').addEventListener('click', runExplain);
for (const id of ['ex-src', 'ex-dst', 'ex-port', 'ex-fqdn']) $(id).addEventListener('keydown', (ev) => ev.key === 'Enter' && runExplain());
$('wi-run').addEventListener('click', runWhatIf);
$('fl-run').addEventListener('click', () => runFlows());
$('fl-clear').addEventListener('click', clearFlows);
$('fl-port').addEventListener('change', () => state.flowLog && runFlows(false));
$('wi-clear').addEventListener('click', clearWhatIf);
$('wi-load').addEventListener('change', () => {
  const v = $('wi-load').value;
  $('wi-load').value = '';
  if (v) editPolicy(v);
});
$('wi-delete-add').addEventListener('click', () => {
  addDelete($('wi-delete').value);
  $('wi-delete').value = '';
});
editor.addEventListener('input', () => {
  if (errorLine) {
    errorLine = 0;
    placeErrorLine();
  }
  drawGutter();
});
editor.addEventListener('scroll', () => {
  $('gutter').scrollTop = editor.scrollTop;
  placeErrorLine();
});
editor.addEventListener('keydown', (ev) => {
  if (ev.key === 'Tab' && !ev.shiftKey) {
    ev.preventDefault();
    editor.setRangeText('  ', editor.selectionStart, editor.selectionEnd, 'end');
    drawGutter();
  } else if (ev.key === 'Enter' && (ev.ctrlKey || ev.metaKey)) {
    ev.preventDefault();
    runWhatIf();
  }
});

// ---- following the model ----

// `serve --watch` and `serve --kubeconfig` change the model under the page. Every response carries the model
// revision: poll it and reload (re-running an open what-if) when it moves, or when the first load failed (a live
// cluster answers 503 until it has been listed).
const FOLLOW_MS = 2000;

async function followRevision() {
  try {
    const res = await fetch('/healthz', { cache: 'no-store' });
    const rev = res.headers.get('x-netpol-revision');
    const busy = document.body.dataset.state === 'loading';
    if (res.ok && rev && !busy && (!state.revision || rev !== state.revision)) {
      await loadAll();
      if (state.whatif) await runWhatIf();
      else if (state.flowLog) await runFlows(false);
    }
  } catch {
    // The server is away (restarting): try again at the next tick.
  }
  setTimeout(followRevision, FOLLOW_MS);
}

readHash();
$('selector').value = state.params.selector;
drawGutter();
loadAll().then(() => setTimeout(followRevision, FOLLOW_MS));
