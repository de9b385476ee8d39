// End-to-end test of the `netpol serve` web UI in headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core). Run by crates/netpol/tests/it/ui_e2e.rs against a server on loopback:
//
//   node e2e/ui.test.mjs URL OUT_DIR            the bundled example (examples/three-tier): checks and screenshots
//   node e2e/ui.test.mjs --perf URL OUT_DIR     a large cluster: timings only, printed as one JSON line
//   node e2e/ui.test.mjs --follow URL OUT_DIR MANIFEST_DIR
//                                               a server with --watch on MANIFEST_DIR: the page follows a change,
//                                               then admin-tier policies written there: policies and explanations
//                                               tier by tier; then Calico objects (a Tier, GlobalNetworkPolicies):
//                                               Calico's tiers in the list and the panels, the tier walk; then a
//                                               Calico staged policy: the staged verdict in the explanation; then a
//                                               Calico HostEndpoint: each host check in the explanation
//
// The example run compares what the page shows (the example's flow log overlaid included) with the engine's answers fetched from the API independently
// (the per-pod matrix, the what-if diff, explain), drives the canvas with real clicks, and saves screenshots.
// Exit status 0 when every check passed; 1 with the failures listed otherwise.

import { chromium } from 'playwright-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const args = process.argv.slice(2);
const mode = ['--perf', '--follow'].includes(args[0]) ? args.shift() : 'example';
const [base, outDir, manifestDir] = args;
if (!base || !outDir || (mode === '--follow' && !manifestDir)) {
  console.error('usage: node e2e/ui.test.mjs [--perf] URL OUT_DIR | --follow URL OUT_DIR MANIFEST_DIR');
  process.exit(2);
}
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
fs.mkdirSync(outDir, { recursive: true });

let failures = 0;
let passes = 0;
function check(ok, what, detail) {
  if (ok) {
    passes++;
    console.log(`ok - ${what}`);
  } else {
    failures++;
    console.log(`not ok - ${what}${detail === undefined ? '' : `\n  ${typeof detail === 'string' ? detail : JSON.stringify(detail)}`}`);
  }
  return ok;
}

async function api(p, init) {
  const r = await fetch(`${base}${p}`, init);
  const text = await r.text();
  if (!r.ok) throw new Error(`${p}: HTTP ${r.status}: ${text}`);
  return (r.headers.get('content-type') || '').startsWith('application/json') ? JSON.parse(text) : text;
}

// ---- the engine's answers, computed here from the per-pod matrix ----

/** Node id of every pod (`ns/pod`), from the graph's nodes (all pods listed: the example's nodes are small). */
function podNodes(nodes) {
  const m = new Map();
  for (const n of nodes) {
    for (const p of n.pods) m.set(`${n.namespace}/${p}`, n.id);
  }
  return m;
}

/** Allowed ordered pairs of distinct pods on `port`, as a Set of "a\0b", and the pod list. */
async function allowedPairs(port) {
  const m = await api(`/api/v1/matrix?port=${encodeURIComponent(port)}`);
  const set = new Set();
  const rows = m.ports[0].rows;
  m.pods.forEach((a, i) => m.pods.forEach((b, j) => i !== j && rows[i][j] && set.add(`${a}\0${b}`)));
  return { pods: m.pods, set };
}

/** Pod pairs per node edge: Map "src\0dst" → pairs. */
function aggregate(pairs, nodeOf) {
  const out = new Map();
  for (const k of pairs) {
    const [a, b] = k.split('\0');
    const key = `${nodeOf.get(a)}\0${nodeOf.get(b)}`;
    out.set(key, (out.get(key) || 0) + 1);
  }
  return out;
}

/** Whether a diff port-set text (`TCP 80,8000-8080; UDP 53`, `all`) holds PORT/PROTO (written separately from
 * the UI's own parser on purpose). */
function portsHold(text, port, proto) {
  if (text === 'all') return true;
  return text.split(';').some((part) => {
    const m = part.trim().match(/^(TCP|UDP|SCTP) (.+)$/);
    if (!m || m[1] !== proto) return false;
    return m[2] === 'all' || m[2].split(',').some((r) => {
      const [lo, hi] = r.split('-').map(Number);
      return port >= lo && port <= (Number.isNaN(hi) || hi === undefined ? lo : hi);
    });
  });
}

// ---- page helpers ----

async function launch() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'netpol-chromium-'));
  const ctx = await chromium.launchPersistentContext(dir, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1440, height: 900 },
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  return { ctx, dir };
}

async function setPort(page, port) {
  await page.fill('#port', port);
  await page.evaluate(() => (document.body.dataset.state = 'loading'));
  await page.click('#filters button[type=submit]');
  await page.waitForSelector('body[data-state="ready"]', { timeout: 20000 });
}

async function tableRows(page) {
  await page.evaluate(() => (document.getElementById('edges-details').open = true));
  return page.$$eval('#edges-table tbody tr', (rows) => rows.map((r) => ({ ...r.dataset })));
}

async function clickNode(page, id, shift = false) {
  const pos = await page.evaluate((x) => window.__netpol.screenPos(x), id);
  if (!pos) throw new Error(`node ${id} is not drawn`);
  const box = await page.locator('#graph').boundingBox();
  if (shift) await page.keyboard.down('Shift');
  await page.mouse.click(box.x + pos.x, box.y + pos.y);
  if (shift) await page.keyboard.up('Shift');
}

// ---- the example run ----

const FIX_AND_ADD = `# The mis-indent fixed: one peer (AND) instead of two (OR), so only the api reaches postgres.
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: allow-postgres-from-backend
  namespace: database
spec:
  podSelector:
    matchLabels:
      app: postgres
  policyTypes: [Ingress]
  ingress:
    - from:
        - namespaceSelector:
            matchLabels:
              tier: backend
          podSelector:
            matchLabels:
              app: api
      ports:
        - port: 5432
---
# And Prometheus may query postgres' port (an exporter on 5432, say).
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: allow-postgres-from-monitoring
  namespace: database
spec:
  podSelector:
    matchLabels:
      app: postgres
  ingress:
    - from:
        - namespaceSelector:
            matchLabels:
              tier: monitoring
      ports:
        - port: 5432
`;

const DENY_MONITORING_EGRESS = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: deny-egress
  namespace: monitoring
spec:
  podSelector: {}
  policyTypes: [Egress]`;

const ADMIN_DENY = `apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata:
  name: frontend-guard
spec:
  tier: Admin
  priority: 10
  subject:
    namespaces:
      matchLabels:
        tier: backend
  ingress:
    - name: no-frontend
      action: Deny
      from:
        - namespaces:
            matchLabels:
              tier: frontend`;

// Line 12 holds the invalid port.
const INVALID = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: broken
  namespace: backend
spec:
  podSelector: {}
  ingress:
    - from:
        - podSelector: {}
      ports:
        - port: 0
`;

async function exampleRun(page) {
  const errors = [];
  // The invalid policy's 422 is expected; any other console error (a CSP violation, an exception) is not.
  page.on('console', (m) => m.type() === 'error' && !/Failed to load resource: .* 422 /.test(m.text()) && errors.push(m.text()));
  page.on('pageerror', (e) => {
    console.log(`# page error: ${e.message}`);
    errors.push(e.message);
  });

  await page.goto(base);
  await page.waitForSelector('body[data-state="ready"]', { timeout: 20000 });
  check((await page.title()) === 'netpol', 'the page loads');

  // 1. Edges shown = the engine's per-pod matrix, aggregated per node, on several ports.
  for (const port of ['8080/TCP', '5432/TCP', '53/UDP', '9100/TCP']) {
    await setPort(page, port);
    const graph = await page.evaluate(() => window.__netpol.state.graph);
    const nodeOf = podNodes(graph.nodes);
    const { pods, set } = await allowedPairs(port);
    check(pods.every((p) => nodeOf.has(p)), `${port}: every pod of the matrix is in a node`, pods.filter((p) => !nodeOf.has(p)));
    const want = aggregate(set, nodeOf);
    const rows = await tableRows(page);
    const got = new Map(rows.map((r) => [`${r.src}\0${r.dst}`, Number(r.pairs)]));
    const same = want.size === got.size && [...want].every(([k, v]) => got.get(k) === v);
    check(same && want.size > 0, `${port}: the edges table equals the engine's matrix (${want.size} edges)`, {
      want: [...want].map(([k, v]) => `${k.replace('\0', ' -> ')} ${v}`),
      got: [...got].map(([k, v]) => `${k.replace('\0', ' -> ')} ${v}`),
    });
    const counts = new Map(graph.nodes.map((n) => [n.id, n.count]));
    check(
      rows.every((r) => Number(r.total) === counts.get(r.src) * counts.get(r.dst) - (r.src === r.dst ? counts.get(r.src) : 0)),
      `${port}: every edge's total is the number of pod pairs between its nodes`,
    );
    const drawn = await page.evaluate(() => window.__netpol.perf.edges);
    check(drawn === rows.length, `${port}: the canvas draws as many edges as the table lists`, { drawn, rows: rows.length });
  }

  // 2. Click the web node on the canvas: the panel lists who reaches it and where it goes, from the matrix.
  await setPort(page, '8080/TCP');
  const graph = await page.evaluate(() => window.__netpol.state.graph);
  const web = graph.nodes.find((n) => n.namespace === 'frontend' && n.name === 'web');
  const api8080 = graph.nodes.find((n) => n.namespace === 'backend' && n.name === 'api');
  const postgres = graph.nodes.find((n) => n.namespace === 'database' && n.name === 'postgres');
  const want = aggregate((await allowedPairs('8080/TCP')).set, podNodes(graph.nodes));
  const wantIn = [...want.keys()].map((k) => k.split('\0')).filter(([, d]) => d === web.id).map(([s]) => s).sort();
  const wantOut = [...want.keys()].map((k) => k.split('\0')).filter(([s]) => s === web.id).map(([, d]) => d).sort();
  await clickNode(page, web.id);
  await page.waitForSelector('#reach-in', { timeout: 5000 });
  check((await page.textContent('#inspect .title .big')) === 'web', 'a click on the web node opens its panel');
  const gotIn = (await page.$$eval('#reach-in li[data-peer]', (l) => l.map((x) => x.dataset.peer))).sort();
  const gotOut = (await page.$$eval('#reach-out li[data-peer]', (l) => l.map((x) => x.dataset.peer))).sort();
  check(JSON.stringify(gotIn) === JSON.stringify(wantIn) && wantIn.length > 0, 'the panel lists who can reach web', { gotIn, wantIn });
  check(JSON.stringify(gotOut) === JSON.stringify(wantOut) && wantOut.includes(api8080.id), 'the panel lists where web can go', { gotOut, wantOut });
  const isoText = await page.textContent('#inspect .kv');
  check(/isolated by .*frontend\/default-deny/.test(isoText), 'the panel shows web isolated, with its policies', isoText);
  const panelText = await page.textContent('#inspect');
  check(!/\b(null|undefined|NaN)\b/.test(panelText), 'the node panel prints no null/undefined', panelText);
  await page.mouse.move(1, 890); // no tooltip
  await page.screenshot({ path: path.join(outDir, 'three-tier-node.png') });

  // 3. Shift+click postgres: the explanation of web -> postgres (denied), as the explain API says.
  await clickNode(page, postgres.id, true);
  await page.waitForFunction(() => document.querySelector('#explain .explanation')?.dataset.verdict === 'deny', null, { timeout: 5000 });
  const apiDeny = await api(`/api/v1/explain?src=frontend/web&dst=database/postgres&port=8080/TCP`);
  const denyText = await page.textContent('#explain .explanation');
  check(apiDeny.verdict === 'deny' && denyText.includes('frontend/web → database/postgres'), 'shift+click explains web -> postgres: deny', denyText);

  // 4. Click the web -> api edge in the table: the explanation names the allowing policy.
  await page.click(`#edges-table tr[data-src="${web.id}"][data-dst="${api8080.id}"]`);
  await page.waitForFunction(() => document.querySelector('#explain .explanation')?.dataset.verdict === 'allow', null, { timeout: 5000 });
  const allowText = await page.textContent('#explain .explanation');
  check(allowText.includes('backend/allow-api-from-frontend') && allowText.includes('frontend/allow-egress-to-api'), 'an edge explains itself with the allowing rules', allowText);

  // 5. Click the edge itself on the canvas (the middle of its curve).
  await clickNode(page, postgres.id); // the panel now shows postgres
  await page.waitForFunction(() => document.querySelector('#inspect .title .big')?.textContent === 'postgres');
  const mid = await page.evaluate(([a, b]) => window.__netpol.edgePos(a, b), [web.id, api8080.id]);
  const box = await page.locator('#graph').boundingBox();
  await page.mouse.click(box.x + mid.x, box.y + mid.y);
  const hit = await page
    .waitForFunction(() => document.querySelector('#inspect .title .big')?.textContent === 'Edge', null, { timeout: 5000 })
    .then(() => true, () => false);
  check(hit, 'a click on an edge of the canvas selects it');

  // 6. A lint finding links to its object.
  await page.click('#lint-list li[data-object="NetworkPolicy database/allow-postgres-from-backend"]');
  check((await page.textContent('#inspect .title .big')) === 'allow-postgres-from-backend', 'a lint finding opens its policy');
  const hl = await page.evaluate(() => window.__netpol.highlight());
  check(hl.includes(postgres.id), 'the policy highlights the pods it selects on the graph', hl);

  // 6b. The api node on 443/TCP: its panel says which outside addresses it may open (the ipBlock of
  // backend/allow-api-egress-external), and the explain link explains one such flow as allowed by that policy.
  await setPort(page, '443/TCP');
  const g443 = await page.evaluate(() => window.__netpol.state.graph);
  const wantMarks = g443.nodes.filter((n) => n.toOutside.pods > 0).length + g443.nodes.filter((n) => n.fromOutside.pods > 0).length;
  const marks = await page.evaluate(() => window.__netpol.outsideMarks());
  check(marks === wantMarks && wantMarks > 0, `443/TCP: the canvas marks every node's traffic with outside addresses (${wantMarks})`, { marks, wantMarks });
  await clickNode(page, api8080.id);
  await page.waitForSelector('#reach-outside li[data-outside="to"]', { timeout: 5000 });
  const apiNode = (await page.evaluate(() => window.__netpol.state.graph)).nodes.find((n) => n.id === api8080.id);
  const toText = await page.textContent('#reach-outside li[data-outside="to"]');
  check(
    apiNode.toOutside.blocks.includes('0.0.0.0/0 except 10.0.0.0/8') && toText.includes('0.0.0.0/0 except 10.0.0.0/8'),
    'the node panel shows the outside addresses api may open on 443/TCP',
    { toText, toOutside: apiNode.toOutside },
  );
  await page.mouse.move(1, 890); // no tooltip
  await page.screenshot({ path: path.join(outDir, 'three-tier-outside.png') });
  await page.click('#reach-outside li[data-outside="to"] a');
  await page.waitForFunction(() => document.querySelector('#explain .explanation')?.dataset.verdict === 'allow', null, { timeout: 5000 });
  const outText = await page.textContent('#explain .explanation');
  check(outText.includes('backend/allow-api-egress-external') && outText.includes(apiNode.toOutside.example[1]), 'the outside flow explains itself with the ipBlock rule', outText);

  // 7. What-if: the fixed policy and a new one on 5432/TCP. Highlighted edges = the what-if API's diff applied
  // to the engine's per-pod matrix.
  await setPort(page, '5432/TCP');
  await page.click('#tab-btn-whatif');
  await page.fill('#editor', FIX_AND_ADD);
  await page.click('#wi-run');
  await page.waitForSelector('#whatif-result[data-state="ready"]', { state: 'attached', timeout: 20000 });
  const body = `apply:\n${FIX_AND_ADD.split(/^---$/m)
    .map((d) => d.trim().split('\n').filter((l) => !l.startsWith('#')).map((l, i) => (i === 0 ? `- ${l}` : `  ${l}`)).join('\n'))
    .join('\n')}\n`;
  const diff = await api('/api/v1/whatif', { method: 'POST', headers: { 'content-type': 'application/yaml' }, body });
  const wiGraph = await page.evaluate(() => window.__netpol.state.whatif);
  const nodeOf = podNodes(wiGraph.nodes);
  const before = (await allowedPairs('5432/TCP')).set;
  const after = new Set(before);
  for (const g of diff.groups) {
    if (!portsHold(g.ports, 5432, 'TCP')) continue;
    for (const s of g.sources) {
      for (const d of g.destinations) {
        if (s === d) continue;
        if (g.change === 'newly_allowed') after.add(`${s}\0${d}`);
        else after.delete(`${s}\0${d}`);
      }
    }
  }
  const b = aggregate(before, nodeOf);
  const a = aggregate(after, nodeOf);
  const expect = new Map();
  for (const k of new Set([...b.keys(), ...a.keys()])) {
    const [x, y] = [b.get(k) || 0, a.get(k) || 0];
    expect.set(k, x === 0 ? 'added' : y === 0 ? 'removed' : x !== y ? 'changed' : 'unchanged');
  }
  const rows = await tableRows(page);
  const got = new Map(rows.map((r) => [`${r.src}\0${r.dst}`, r.change]));
  const same = expect.size === got.size && [...expect].every(([k, v]) => got.get(k) === v);
  const changed = [...expect].filter(([, v]) => v !== 'unchanged').map(([k, v]) => `${v} ${k.replace('\0', ' -> ')}`);
  check(same, `what-if: highlighted edges equal the what-if API's diff (${changed.join('; ')})`, {
    expect: [...expect].map(([k, v]) => `${k.replace('\0', ' -> ')} ${v}`),
    got: [...got].map(([k, v]) => `${k.replace('\0', ' -> ')} ${v}`),
  });
  check(
    changed.some((c) => c.startsWith('removed') && c.includes('worker')) && changed.some((c) => c.startsWith('added') && c.includes('prometheus')),
    'what-if: worker -> postgres removed, prometheus -> postgres added',
    changed,
  );
  const summary = await page.$eval('#whatif-result .summary', (e) => ({ ...e.dataset }));
  check(Number(summary.added) === [...expect.values()].filter((v) => v === 'added').length && Number(summary.removed) === [...expect.values()].filter((v) => v === 'removed').length, 'what-if: the summary counts the highlighted edges', summary);
  const resultText = await page.textContent('#whatif-result');
  check(!/\b(null|undefined|NaN)\b/.test(resultText), 'the what-if result prints no null/undefined', resultText);
  const loaded = await api('/api/v1/explain?src=backend/worker&dst=database/postgres&port=5432');
  check(loaded.verdict === 'allow', 'what-if applied nothing: the loaded model still allows worker -> postgres');
  await page.screenshot({ path: path.join(outDir, 'three-tier-whatif.png') });

  // 7b. A default-deny egress for monitoring: the panel lists prometheus losing every outside address, as the
  // what-if API's diff says.
  await page.fill('#editor', DENY_MONITORING_EGRESS);
  await page.click('#wi-run');
  await page.waitForSelector('#whatif-result[data-state="ready"]', { state: 'attached', timeout: 20000 });
  const wiOut = await api('/api/v1/whatif', { method: 'POST', headers: { 'content-type': 'application/yaml' }, body: `apply:\n${DENY_MONITORING_EGRESS.split('\n').map((l, i) => (i === 0 ? `- ${l}` : `  ${l}`)).join('\n')}\n` });
  const shownOut = await page.$$eval('#whatif-outside .diffgroup', (l) => l.map((x) => ({ ...x.dataset, text: x.textContent })));
  check(
    wiOut.outside.length > 0 &&
      shownOut.length === Math.min(30, wiOut.outside.length) &&
      shownOut.some((g) => g.change === 'newly_denied' && g.direction === 'egress' && g.text.includes('monitoring/') && g.text.includes('outside 0.0.0.0/0')),
    'what-if: a default-deny egress lists the outside addresses it cuts off',
    { shownOut, api: wiOut.outside.map((g) => `${g.change} ${g.direction} ${g.pods.join(',')} ${g.addresses.join(',')} ${g.ports}`) },
  );
  await page.screenshot({ path: path.join(outDir, 'three-tier-whatif-outside.png') });

  // 8. An invalid policy: the error names the field, at its line.
  await page.fill('#editor', INVALID);
  await page.click('#wi-run');
  await page.waitForSelector('#whatif-result[data-state="error"]', { state: 'attached', timeout: 20000 });
  const err = await page.$eval('#whatif-error', (e) => ({ field: e.dataset.field, line: e.dataset.line, text: e.textContent, hidden: e.hidden }));
  const gutterBad = await page.textContent('#gutter .bad').catch(() => '');
  check(
    !err.hidden && err.field === 'spec.ingress[0].ports[0].port' && err.line === '12' && err.text.includes('spec.ingress[0].ports[0].port') && gutterBad === '12',
    'what-if: an invalid policy shows its field and line inline',
    { err, gutterBad },
  );
  await page.screenshot({ path: path.join(outDir, 'three-tier-invalid.png') });

  // 8b. The what-if editor takes the admin kinds: an Admin-tier ClusterNetworkPolicy that denies the frontend
  // the backend removes web -> api, as the what-if API says.
  await setPort(page, '8080/TCP');
  await page.click('#tab-btn-whatif');
  await page.fill('#editor', ADMIN_DENY);
  await page.click('#wi-run');
  await page.waitForSelector('#whatif-result[data-state="ready"]', { state: 'attached', timeout: 20000 });
  const cnpDiff = await api('/api/v1/whatif', { method: 'POST', headers: { 'content-type': 'application/yaml' }, body: `apply:\n${ADMIN_DENY.split('\n').map((l, i) => (i === 0 ? `- ${l}` : `  ${l}`)).join('\n')}\n` });
  const cnpRows = await tableRows(page);
  const applied = await page.$$eval('#whatif-result li[data-policy]', (l) => l.map((x) => ({ ...x.dataset })));
  check(
    cnpDiff.groups.some((g) => g.change === 'newly_denied' && g.sources.some((x) => x.startsWith('frontend/web')) && g.destinations.some((x) => x.startsWith('backend/api'))) &&
      cnpRows.some((r) => r.src === web.id && r.dst === api8080.id && r.change === 'removed') &&
      applied.length === 1 && applied[0].policy === 'cnp/frontend-guard' && applied[0].tier === 'Admin',
    'what-if: an Admin ClusterNetworkPolicy removes web -> api, as the what-if API says',
    { applied, rows: cnpRows.filter((r) => r.change && r.change !== 'unchanged') },
  );
  await setPort(page, '5432/TCP');

  // 9. The screenshot for the README: the what-if preview with the web node... on the example's main port.
  await page.fill('#editor', FIX_AND_ADD);
  await page.click('#wi-run');
  await page.waitForSelector('#whatif-result[data-state="ready"]', { state: 'attached', timeout: 20000 });
  await clickNode(page, postgres.id);
  await page.click('#tab-btn-whatif');
  await page.evaluate(() => {
    document.getElementById('edges-details').open = false;
    document.getElementById('editor').scrollTop = 0;
    document.getElementById('editor').dispatchEvent(new Event('scroll'));
  });
  await page.mouse.move(1, 890); // no tooltip
  await page.waitForTimeout(100); // the canvas refits after the table closes
  await page.screenshot({ path: path.join(outDir, 'ui.png') });

  // 10. The example's Hubble flow log over the graph, with the what-if preview still on: the observed edges listed
  // are the API's (judged against the previewed policies too), the denied ones red, the worker -> postgres
  // connections the fix would cut marked; clicking the observed-only web -> postgres edge explains the logged flow.
  await page.click('#tab-btn-flows');
  const logFile = new URL('../examples/three-tier/flows.hubble.jsonl', import.meta.url);
  await page.setInputFiles('#fl-file', logFile.pathname);
  await page.click('#fl-run');
  await page.waitForSelector('#flows-result[data-state="ready"]', { state: 'attached', timeout: 20000 });
  const flowGraph = await page.evaluate(() => window.__netpol.state.graph);
  const overlay = await api(`/api/v1/graph/flows?group=${flowGraph.grouping}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ flows: fs.readFileSync(logFile, 'utf8'), whatif: FIX_AND_ADD, delete: [] }),
  });
  const listed = await page.$$eval('.observed-list li', (l) => l.map((x) => ({ ...x.dataset, red: x.classList.contains('denied'), cutMark: x.classList.contains('cut') })));
  const key = (o) => `${o.src ?? ''}\0${o.dst ?? ''}\0${o.deniedAny}\0${o.newlyDenied}`;
  const apiEdges = overlay.edges.map(key).sort();
  const shownEdges = listed.map((x) => `${x.src}\0${x.dst}\0${x.denied}\0${x.cut}`).sort();
  check(
    overlay.whatif && overlay.edges.length > 0 && JSON.stringify(shownEdges) === JSON.stringify(apiEdges) && listed.every((x) => x.red === (x.denied === 'true') && x.cutMark === (x.cut !== '0')),
    `flow log: the observed edges listed are the API's (${overlay.edges.length}), the denied ones red, the cut ones marked`,
    { shownEdges, apiEdges },
  );
  const cutBy = await page.$eval('#flows-result .summary', (e) => e.dataset.cut);
  const workerNode = flowGraph.nodes.find((n) => n.namespace === 'backend' && n.name === 'worker');
  const pgNode = flowGraph.nodes.find((n) => n.namespace === 'database' && n.name === 'postgres');
  const webNode = flowGraph.nodes.find((n) => n.namespace === 'frontend' && n.name === 'web');
  const cut = overlay.edges.find((o) => o.src === webNode?.id && o.dst === pgNode?.id);
  const legend = await page.$$eval('.legend .fl', (l) => l.map((d) => getComputedStyle(d).display));
  check(cut && cut.deniedAny && cut.denied > 0 && legend.length === 3 && legend.every((d) => d !== 'none'), 'flow log: web -> postgres is observed denied, with its legend', { cut, legend });
  const workerPg = overlay.edges.find((o) => o.src === workerNode?.id && o.dst === pgNode?.id);
  check(workerPg && workerPg.newlyDenied === 3 && !workerPg.deniedAny && cutBy === '3', 'flow log: the fix would cut the 3 observed worker -> postgres connections', { workerPg, cutBy });
  const at = cut && (await page.evaluate(([a, b]) => window.__netpol.observedPos(a, b), [cut.src, cut.dst]));
  if (check(Boolean(at), 'flow log: the observed web -> postgres edge is drawn')) {
    const box = await page.locator('#graph').boundingBox();
    await page.mouse.click(box.x + at.x, box.y + at.y);
    await page.waitForSelector('#explain .explanation', { timeout: 20000 });
    const inspect = await page.textContent('#inspect');
    const verdict = await page.textContent('#explain .verdict');
    check(inspect.startsWith('Observed') && inspect.includes('1 denied') && /deny/i.test(verdict), 'flow log: clicking the observed edge explains the logged flow', { inspect, verdict });
  }
  const flowsText = await page.textContent('#flows-result');
  check(!/\b(null|undefined|NaN)\b/.test(flowsText) && /(body|flows):8: /.test(flowsText), 'flow log: the result lists the unreadable line, and no null/undefined', flowsText);
  await page.screenshot({ path: path.join(outDir, 'three-tier-flows.png') });
  // Clearing the what-if re-runs the overlay against the loaded policies alone; Clear removes it.
  await page.click('#tab-btn-whatif');
  await page.click('#wi-clear');
  await page.waitForFunction(() => window.__netpol.state.flows && !window.__netpol.state.flows.whatif, null, { timeout: 20000 });
  await page.click('#tab-btn-flows');
  await page.waitForSelector('#flows-result[data-state="ready"]', { state: 'attached', timeout: 20000 });
  const legendNow = await page.$$eval('.legend .fl', (l) => l.map((d) => getComputedStyle(d).display));
  check(legendNow.filter((d) => d !== 'none').length === 2, 'flow log: without a what-if, no what-if legend', legendNow);
  await page.click('#fl-clear');
  check(await page.evaluate(() => window.__netpol.state.flows === null && !document.body.classList.contains('flows')), 'flow log: Clear removes the overlay');

  check(errors.length === 0, 'no console errors (CSP violations included)', errors);
}

// ---- the large-cluster run ----

async function perfRun(page) {
  const out = {};
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  const t0 = Date.now();
  await page.goto(base);
  await page.waitForSelector('body[data-state="ready"]', { timeout: 120000 });
  out.firstLoadMs = Date.now() - t0;
  const first = await page.evaluate(() => ({ ...window.__netpol.perf, grouping: window.__netpol.state.graph.grouping, pods: window.__netpol.state.graph.totalPods }));
  out.first = first;
  // Redraw cost alone (pan/zoom/selection): median of 20 draws.
  out.redrawMs = await page.evaluate(() => {
    const times = [];
    for (let i = 0; i < 21; i++) times.push(window.__netpol.redraw());
    times.sort((a, b) => a - b);
    return times[10];
  });
  out.runs = [];
  const ports = await page.$$eval('#port-list option', (l) => l.map((o) => o.value).slice(0, 3));
  for (const group of ['auto', 'labels', 'namespace']) {
    for (const port of ports) {
      await page.evaluate(([g, p]) => {
        document.getElementById('grouping').value = g;
        document.getElementById('port').value = p;
        document.body.dataset.state = 'loading';
      }, [group, port]);
      await page.click('#filters button[type=submit]');
      await page.waitForSelector('body[data-state="ready"]', { timeout: 120000 });
      const p = await page.evaluate(() => ({ ...window.__netpol.perf, grouping: window.__netpol.state.graph.grouping }));
      const t = Date.now();
      await api(`/api/v1/graph?port=${encodeURIComponent(port)}${group === 'auto' ? '' : `&group=${group}`}`);
      out.runs.push({ group, port, apiMs: Date.now() - t, ...p });
    }
  }
  // A node click (panel + redraw) and a what-if preview of a loaded policy.
  await page.evaluate(() => {
    document.getElementById('grouping').value = 'auto';
    document.body.dataset.state = 'loading';
  });
  await page.click('#filters button[type=submit]');
  await page.waitForSelector('body[data-state="ready"]', { timeout: 120000 });
  const g = await page.evaluate(() => window.__netpol.state.graph);
  const big = g.nodes.slice().sort((a, b) => b.count - a.count)[0];
  await clickNode(page, big.id);
  await page.waitForSelector('#reach-in', { timeout: 20000 });
  out.nodeClickMs = await page.evaluate(() => window.__netpol.perf.selectMs);
  await page.click('#tab-btn-whatif');
  const pol = await page.$eval('#wi-load option:nth-child(2)', (o) => o.value);
  await page.selectOption('#wi-load', pol);
  await page.waitForFunction(() => document.getElementById('editor').value.includes('NetworkPolicy'), null, { timeout: 20000 });
  await page.click('#wi-run');
  await page.waitForSelector('#whatif-result[data-state="ready"]', { state: 'attached', timeout: 120000 });
  Object.assign(out, await page.evaluate(() => ({
    whatIfMs: window.__netpol.perf.whatIfMs,
    whatIfFetchMs: window.__netpol.perf.whatIfFetchMs,
    whatIfServerMs: window.__netpol.state.whatif.computeMs,
  })));
  await page.screenshot({ path: path.join(outDir, 'large.png') });
  out.errors = errors;
  console.log(`PERF ${JSON.stringify(out)}`);
  check(errors.length === 0, 'no page errors on the large cluster', errors);
  check(first.nodes > 0 && first.nodes <= 300, `the large cluster is grouped to at most 300 nodes (${first.nodes}, by ${first.grouping})`);
}

/** The page follows the model: a policy written into the watched manifests shows up without a reload. */
async function followRun(page) {
  const errors = [];
  page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(`${base}/#port=5432%2FTCP`);
  await page.waitForSelector('body[data-state="ready"]', { timeout: 20000 });
  const info = () => page.textContent('#model-info');
  check((await info()).startsWith('revision 1 '), 'the page shows revision 1', await info());
  check((await info()).includes(' · cni: generic (auto: '), 'the header names the CNI the answers follow', await info());
  const edgesBefore = (await tableRows(page)).length;

  // Let the monitoring namespace reach postgres on 5432: policies only add allowances, so an edge appears.
  const policy = [
    'apiVersion: networking.k8s.io/v1',
    'kind: NetworkPolicy',
    'metadata: {name: followed-allow, namespace: database}',
    'spec:',
    '  podSelector: {matchLabels: {app: postgres}}',
    '  ingress: [{from: [{namespaceSelector: {matchLabels: {tier: monitoring}}}], ports: [{port: 5432}]}]',
    '',
  ].join('\n');
  fs.writeFileSync(path.join(manifestDir, 'zz-followed.yaml'), policy);
  await page.waitForFunction(() => document.getElementById('model-info').textContent.startsWith('revision 2 '), null, { timeout: 20000 });
  await page.waitForSelector('body[data-state="ready"]', { timeout: 20000 });
  check(true, 'the page moved to revision 2 by itself');
  const names = await page.$$eval('#policy-list li', (lis) => lis.map((li) => li.textContent));
  check(names.some((n) => n.includes('database/followed-allow')), 'the new policy is listed', names);

  const graph = await page.evaluate(() => window.__netpol.state.graph);
  const want = aggregate((await allowedPairs('5432/TCP')).set, podNodes(graph.nodes));
  const rows = await tableRows(page);
  const got = new Map(rows.map((r) => [`${r.src}\0${r.dst}`, Number(r.pairs)]));
  const same = want.size === got.size && [...want].every(([k, v]) => got.get(k) === v);
  check(same, `after the change the edges table equals the engine's matrix (${want.size} edges)`, {
    want: [...want].map(([k, v]) => `${k.replace('\0', ' -> ')} ${v}`),
    got: [...got].map(([k, v]) => `${k.replace('\0', ' -> ')} ${v}`),
  });
  check(rows.length === edgesBefore + 1, `one new edge into postgres (${edgesBefore} -> ${rows.length})`);

  // Admin tiers: the database's platform policies (an Admin Pass for monitoring, a Baseline that denies the
  // rest). The policies are listed by tier, the postgres node lists its policies tier by tier, and an
  // explanation walks the tiers as the explain API says.
  const tiers = [
    'apiVersion: policy.networking.k8s.io/v1alpha2',
    'kind: ClusterNetworkPolicy',
    'metadata: {name: database-guard}',
    'spec:',
    '  tier: Admin',
    '  priority: 10',
    '  subject: {namespaces: {matchLabels: {tier: database}}}',
    '  ingress: [{name: monitoring-to-tenants, action: Pass, from: [{namespaces: {matchLabels: {tier: monitoring}}}]}]',
    '---',
    'apiVersion: policy.networking.k8s.io/v1alpha2',
    'kind: ClusterNetworkPolicy',
    'metadata: {name: database-baseline}',
    'spec:',
    '  tier: Baseline',
    '  priority: 5',
    '  subject: {namespaces: {matchLabels: {tier: database}}}',
    '  ingress: [{name: everything-else, action: Deny, from: [{namespaces: {}}]}]',
    '',
  ].join('\n');
  fs.writeFileSync(path.join(manifestDir, 'zz-tiers.yaml'), tiers);
  await page.waitForFunction(() => document.getElementById('model-info').textContent.startsWith('revision 3 '), null, { timeout: 20000 });
  await page.waitForSelector('body[data-state="ready"]', { timeout: 20000 });
  const listed = await page.$$eval('#policy-list li', (l) => l.map((x) => `${x.dataset.tier} ${x.dataset.policy}`));
  check(
    listed[0] === 'Admin cnp/database-guard' && listed[listed.length - 1] === 'Baseline cnp/database-baseline',
    'the policies are listed in tier order, with their tier',
    listed,
  );
  const g3 = await page.evaluate(() => window.__netpol.state.graph);
  const pg = g3.nodes.find((n) => n.namespace === 'database' && n.name === 'postgres');
  const prom = g3.nodes.find((n) => n.namespace === 'monitoring' && n.name === 'prometheus');
  await clickNode(page, pg.id);
  await page.waitForSelector('#tiers .tiers[data-direction="ingress"]', { timeout: 5000 });
  const shownTiers = await page.$$eval('#tiers .tiers[data-direction="ingress"] li', (l) => l.map((x) => [x.dataset.tier, x.textContent]));
  check(
    shownTiers.map((t) => t[0]).join(',') === 'Admin,NetworkPolicy,Baseline' &&
      shownTiers[0][1].includes('cnp/database-guard (priority 10)') &&
      shownTiers[1][1].includes('database/followed-allow') &&
      shownTiers[2][1].includes('cnp/database-baseline (priority 5)'),
    'the postgres node lists its ingress policies tier by tier, with priorities',
    shownTiers,
  );
  const [src, dst] = [`monitoring/${prom.pods[0]}`, `database/${pg.pods[0]}`];
  await page.fill('#ex-src', src);
  await page.fill('#ex-dst', dst);
  await page.fill('#ex-port', '5432/TCP');
  await page.click('#ex-run');
  await page.waitForSelector('#explain .explanation', { timeout: 5000 });
  const want3 = await api(`/api/v1/explain?src=${encodeURIComponent(src)}&dst=${encodeURIComponent(dst)}&port=5432/TCP`);
  const steps = await page.$$eval('#explain .side[data-direction="ingress"] li.step', (l) => l.map((x) => ({ ...x.dataset, text: x.textContent })));
  const admin = want3.ingress.walk.filter((m) => m.tier !== 'NetworkPolicy');
  check(
    want3.verdict === 'allow' &&
      admin.length === 1 && admin[0].action === 'pass' &&
      steps.length === 2 &&
      steps[0].tier === 'Admin' && steps[0].policy === admin[0].policy && steps[0].action === 'pass' &&
      steps[0].text.includes('"monitoring-to-tenants"') && steps[0].text.includes('→ next tier') &&
      steps[1].tier === 'NetworkPolicy' && steps[1].decides === 'true' && steps[1].text.includes('→ ALLOW') && steps[1].text.includes('database/followed-allow'),
    'a tiered explanation: the Admin tier passes, the NetworkPolicy tier allows (as the explain API walks it)',
    { steps, walk: want3.ingress.walk },
  );
  // From the frontend: no admin rule matches, postgres' NetworkPolicies do not allow it, so the NetworkPolicy
  // tier denies before the Baseline.
  const web3 = g3.nodes.find((n) => n.namespace === 'frontend' && n.name === 'web');
  await page.fill('#ex-src', `frontend/${web3.pods[0]}`);
  await page.click('#ex-run');
  await page.waitForFunction(() => document.querySelector('#explain .explanation')?.dataset.verdict === 'deny', null, { timeout: 5000 });
  const denySide = await page.$eval('#explain .side[data-direction="ingress"]', (x) => ({ ...x.dataset, text: x.textContent }));
  check(denySide.decidedBy === 'network_policy' && denySide.text.includes('→ DENY'), 'a tiered explanation: the NetworkPolicy tier denies', denySide);
  await page.mouse.move(1, 890); // no tooltip
  await page.screenshot({ path: path.join(outDir, 'three-tier-tiers.png') });

  await calicoRun(page, { prom, pg, web: web3 });
  await stagedRun(page, { prom, pg });
  await hostRun(page, { prom });
  check(errors.length === 0, 'no console errors while following', errors);
}

/**
 * A Calico staged policy written into the watched manifests (never enforced): a StagedGlobalNetworkPolicy that
 * would deny monitoring into the database. The explanation keeps the enforced verdict and ends with the staged one
 * ("staged: would deny …"), as the explain API gives it.
 */
async function stagedRun(page, { prom, pg }) {
  const staged = [
    'apiVersion: projectcalico.org/v3',
    'kind: StagedGlobalNetworkPolicy',
    'metadata: {name: security.staged-gate}',
    'spec:',
    '  tier: security',
    '  order: 5',
    "  namespaceSelector: tier == 'database'",
    '  types: [Ingress]',
    "  ingress: [{action: Deny, source: {namespaceSelector: tier == 'monitoring'}}]",
    '',
  ].join('\n');
  fs.writeFileSync(path.join(manifestDir, 'zz-staged.yaml'), staged);
  await page.waitForFunction(() => document.getElementById('model-info').textContent.startsWith('revision 5 '), null, { timeout: 20000 });
  await page.waitForSelector('body[data-state="ready"]', { timeout: 20000 });
  await page.click('#tab-btn-inspect');
  const [src, dst] = [`monitoring/${prom.pods[0]}`, `database/${pg.pods[0]}`];
  await page.fill('#ex-src', src);
  await page.fill('#ex-dst', dst);
  await page.fill('#ex-port', '5432/TCP');
  await page.evaluate(() => document.getElementById('explain').replaceChildren());
  await page.click('#ex-run');
  await page.waitForSelector('#explain .explanation .staged', { timeout: 5000 });
  const want = await api(`/api/v1/explain?src=${encodeURIComponent(src)}&dst=${encodeURIComponent(dst)}&port=5432/TCP`);
  const shown = await page.$eval('#explain .explanation', (x) => ({ verdict: x.dataset.verdict, staged: { ...x.querySelector('.staged').dataset }, text: x.querySelector('.staged').textContent }));
  check(
    want.verdict === 'allow' && want.staged.verdict === 'deny' &&
      shown.verdict === 'allow' && shown.staged.verdict === 'deny' && shown.staged.changed === 'true' &&
      shown.text.includes('staged: would deny') && shown.text.includes('changes the enforced ALLOW') &&
      shown.text.includes('StagedGlobalNetworkPolicy security.staged-gate (Set)'),
    'a staged policy: the explanation keeps the enforced ALLOW and shows "staged: would deny", as the explain API',
    { shown, staged: want.staged && want.staged.verdict },
  );
  await page.mouse.move(1, 890);
  await page.screenshot({ path: path.join(outDir, 'three-tier-staged.png') });
}

/**
 * A Calico HostEndpoint written into the watched manifests: a worker's eth0 at 192.168.1.11, guarded by a
 * GlobalNetworkPolicy that lets monitoring reach the kubelet. The explanation of a flow to that address shows the
 * host check (host endpoint, node, path, verdict) with each stage's walk, as the explain API gives it; a failsafe
 * port shows the failsafe line instead.
 */
async function hostRun(page, { prom }) {
  const hosts = [
    'apiVersion: projectcalico.org/v3',
    'kind: HostEndpoint',
    'metadata: {name: worker-1-eth0, labels: {role: worker}}',
    'spec: {node: worker-1, interfaceName: eth0, expectedIPs: [192.168.1.11]}',
    '---',
    'apiVersion: projectcalico.org/v3',
    'kind: GlobalNetworkPolicy',
    'metadata: {name: host-kubelet}',
    'spec:',
    "  selector: role == 'worker'",
    '  types: [Ingress]',
    "  ingress: [{action: Allow, protocol: TCP, source: {namespaceSelector: tier == 'monitoring'}, destination: {ports: [10250]}}]",
    '',
  ].join('\n');
  fs.writeFileSync(path.join(manifestDir, 'zz-hosts.yaml'), hosts);
  await page.waitForFunction(() => document.getElementById('model-info').textContent.startsWith('revision 6 '), null, { timeout: 20000 });
  await page.waitForSelector('body[data-state="ready"]', { timeout: 20000 });
  await page.click('#tab-btn-inspect');
  const src = `monitoring/${prom.pods[0]}`;
  const explainShown = async (port) => {
    await page.fill('#ex-src', src);
    await page.fill('#ex-dst', '192.168.1.11');
    await page.fill('#ex-port', `${port}/TCP`);
    await page.evaluate(() => document.getElementById('explain').replaceChildren());
    await page.click('#ex-run');
    await page.waitForSelector('#explain .explanation .hosts .host', { timeout: 5000 });
    const want = await api(`/api/v1/explain?src=${encodeURIComponent(src)}&dst=192.168.1.11&port=${port}/TCP`);
    const shown = await page.$eval('#explain .explanation', (x) => ({
      verdict: x.dataset.verdict,
      hosts: [...x.querySelectorAll('.hosts .host')].map((c) => ({
        ...c.dataset,
        text: c.textContent,
        stages: [...c.querySelectorAll('.side')].map((s) => s.textContent),
        failsafe: c.querySelector('.failsafe') ? c.querySelector('.failsafe').textContent : null,
      })),
    }));
    return { want, shown };
  };
  let { want, shown } = await explainShown(10250);
  const c = shown.hosts[0] || {};
  check(
    want.verdict === 'allow' && want.hosts.length === 1 && shown.verdict === 'allow' && shown.hosts.length === 1 &&
      c.hostEndpoint === 'worker-1-eth0' && c.path === 'to-host' && c.allowed === 'true' &&
      c.text.includes('host endpoint worker-1-eth0 (node worker-1), traffic to the host: allowed') &&
      c.stages.length === want.hosts[0].stages.length &&
      c.stages.some((t) => t.includes('host endpoint worker-1-eth0 (normal policies)') && t.includes('gnp/host-kubelet')),
    'a host endpoint: the explanation shows its check, path, verdict and each stage with its walk, as the explain API',
    { shown, want: want.hosts },
  );
  ({ want, shown } = await explainShown(22));
  const f = shown.hosts[0] || {};
  check(
    want.hosts[0].failsafe && f.failsafe === want.hosts[0].failsafe && f.failsafe.includes('FailsafeInboundHostPorts') &&
      f.allowed === 'true' && f.stages.length === 0,
    "a failsafe port: the host check shows Felix's failsafe line, as the explain API",
    { shown, want: want.hosts },
  );
  await page.mouse.move(1, 890);
  await page.screenshot({ path: path.join(outDir, 'three-tier-hosts.png') });
}

/**
 * Calico (`projectcalico.org/v3`) written into the watched manifests: a Tier of its own before kube-admin, with a
 * GlobalNetworkPolicy that passes monitoring on and denies the frontend into the database; the built-in tiers go by
 * Calico's names. The policy list is grouped by tier (order, default action), the policy and tier panels show
 * Calico's words, and explanations walk the tiers as the explain API does; the what-if editor loads a Calico policy
 * in its own shape.
 */
async function calicoRun(page, { prom, pg, web }) {
  const calico = [
    'apiVersion: projectcalico.org/v3',
    'kind: Tier',
    'metadata: {name: security}',
    'spec: {order: 100, defaultAction: Pass}',
    '---',
    'apiVersion: projectcalico.org/v3',
    'kind: GlobalNetworkPolicy',
    'metadata: {name: security.database-gate}',
    'spec:',
    '  tier: security',
    '  order: 10',
    "  namespaceSelector: tier == 'database'",
    '  types: [Ingress]',
    '  ingress:',
    "  - {action: Pass, source: {namespaceSelector: tier == 'monitoring'}}",
    "  - {action: Deny, protocol: TCP, source: {namespaceSelector: tier == 'frontend'}, destination: {ports: [5432]}}",
    '',
  ].join('\n');
  fs.writeFileSync(path.join(manifestDir, 'zz-calico.yaml'), calico);
  await page.waitForFunction(() => document.getElementById('model-info').textContent.startsWith('revision 4 '), null, { timeout: 20000 });
  await page.waitForSelector('body[data-state="ready"]', { timeout: 20000 });
  const tiers = await api('/api/v1/tiers');
  check(
    tiers.map((t) => `${t.name} ${t.defaultAction}`).join(',') === 'security Pass,kube-admin Pass,default Deny,kube-baseline Pass',
    "the tiers API lists Calico's tiers in evaluation order",
    tiers.map((t) => t.name),
  );
  const heads = await page.$$eval('#policy-list li.tier-head', (l) => l.map((x) => [x.dataset.tierHead, x.textContent]));
  const listed = await page.$$eval('#policy-list li[data-policy]', (l) => l.map((x) => `${x.dataset.tier} ${x.dataset.policy}`));
  check(
    heads.map((x) => x[0]).join(',') === 'security,kube-admin,default,kube-baseline' &&
      heads[0][1].includes('order 100') && heads[0][1].includes('default Pass') &&
      listed[0] === 'security gnp/security.database-gate' && listed[1] === 'kube-admin cnp/database-guard',
    'the policy list is grouped by Calico tier, in evaluation order, with orders and default actions',
    { heads, listed },
  );

  // The tier's panel, then the policy's: Calico's words (selector, order, entity rules).
  await page.click('#policy-list li[data-tier-head="security"]');
  const tierPanel = await page.textContent('#inspect');
  check(tierPanel.includes('security') && tierPanel.includes('100') && tierPanel.includes('Pass: what its rules leave undecided') && tierPanel.includes('gnp/security.database-gate (order 10)'), 'the tier panel shows its order, default action and policies', tierPanel);
  await page.click('#policy-list li[data-policy="gnp/security.database-gate"]');
  const pol = await page.$eval('#inspect', (x) => ({ text: x.textContent, selector: x.querySelector('[data-selector]')?.dataset.selector, tier: x.querySelector('[data-tier]')?.textContent }));
  const rules = await page.$$eval('#inspect .rules[data-direction="ingress"] li', (l) => l.map((x) => x.textContent));
  check(
    pol.selector === 'pcns.tier == "database"' && pol.tier.includes('security') && pol.tier.includes('(order 10)') && pol.tier.includes('default action Pass') &&
      rules.length === 2 && rules[0].startsWith('Pass from selector pcns.tier == "monitoring" to the selected endpoint') &&
      rules[1].startsWith('Deny protocol TCP from selector pcns.tier == "frontend" to the selected endpoint where ports 5432/TCP'),
    "the policy panel shows Calico's selector, tier and order, and each rule's source and destination",
    { pol, rules },
  );
  const hl = await page.evaluate(() => window.__netpol.highlight());
  check(hl.length === 1 && hl[0] === pg.id, 'the pods it selects are highlighted', hl);

  // Explanations walk Calico's tiers: security passes prometheus on, kube-admin passes it, the default tier's
  // NetworkPolicy allows; the frontend is denied in the security tier.
  const explainSteps = async (src) => {
    await page.fill('#ex-src', src);
    await page.fill('#ex-dst', `database/${pg.pods[0]}`);
    await page.fill('#ex-port', '5432/TCP');
    await page.evaluate(() => document.getElementById('explain').replaceChildren());
    await page.click('#ex-run');
    await page.waitForSelector('#explain .explanation', { timeout: 5000 });
    return page.$$eval('#explain .side[data-direction="ingress"] li.step', (l) => l.map((x) => ({ ...x.dataset, text: x.textContent })));
  };
  let steps = await explainSteps(`monitoring/${prom.pods[0]}`);
  check(
    steps.length === 3 &&
      steps[0].tier === 'security' && steps[0].action === 'pass' && steps[0].text.includes('gnp/security.database-gate (order 10) ingress rule 0') && steps[0].text.includes('→ next tier') &&
      steps[1].tier === 'kube-admin' && steps[1].action === 'pass' && steps[1].text.includes('cnp/database-guard (priority 10)') &&
      steps[2].tier === 'default' && steps[2].decides === 'true' && steps[2].text.includes('→ ALLOW') && steps[2].text.includes('database/followed-allow'),
    'a Calico explanation: security passes (order 10), kube-admin passes, the default tier allows',
    steps,
  );
  steps = await explainSteps(`frontend/${web.pods[0]}`);
  check(
    steps.length === 1 && steps[0].tier === 'security' && steps[0].action === 'deny' && steps[0].decides === 'true' && steps[0].text.includes('Deny') && steps[0].text.includes('→ DENY'),
    'a Calico explanation: the security tier denies the frontend',
    steps,
  );
  await page.mouse.move(1, 890);
  await page.screenshot({ path: path.join(outDir, 'three-tier-calico.png') });

  // A what-if from the loaded policy, in Calico's own shape: replacing it with itself changes nothing.
  await page.click('#tab-btn-whatif');
  await page.fill('#editor', '');
  await page.selectOption('#wi-load', 'gnp/security.database-gate');
  await page.waitForFunction(() => document.getElementById('editor').value.includes('GlobalNetworkPolicy'), null, { timeout: 5000 });
  const text = await page.inputValue('#editor');
  check(text.startsWith('apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\n') && text.includes('  tier: security\n  order: 10\n  namespaceSelector: tier == "database"\n'), 'the editor loads the Calico policy in its own shape', text);
  await page.click('#wi-run');
  await page.waitForSelector('#whatif-result[data-state="ready"]', { state: 'attached', timeout: 20000 });
  const applied = await page.$$eval('#whatif-result li[data-policy]', (l) => l.map((x) => ({ ...x.dataset, text: x.textContent })));
  const summary = await page.$eval('#whatif-result .summary', (x) => ({ ...x.dataset }));
  check(
    applied.length === 1 && applied[0].policy === 'gnp/security.database-gate' && applied[0].tier === 'security' && applied[0].text.includes('replaces the loaded policy') &&
      summary.added === '0' && summary.removed === '0',
    'the what-if takes the Calico policy: it replaces the loaded one in its tier, nothing changes',
    { applied, summary },
  );
  // The tier's default action turned to Deny: what the tier does not decide for the database is denied.
  await page.fill('#editor', 'apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: security}\nspec: {order: 100, defaultAction: Deny}\n');
  await page.click('#wi-run');
  await page.waitForFunction(() => document.querySelector('#whatif-result li[data-policy="tier/security"]'), null, { timeout: 20000 });
  const w = await page.evaluate(() => window.__netpol.state.whatif);
  const removed = w.edges.filter((e) => e.change === 'removed').map((e) => `${e.src} -> ${e.dst}`);
  const want = await api('/api/v1/whatif', { method: 'POST', headers: { 'content-type': 'application/yaml' }, body: `apply:\n- {apiVersion: projectcalico.org/v3, kind: Tier, metadata: {name: security}, spec: {order: 100, defaultAction: Deny}}\n` });
  const gone = want.groups.filter((g) => g.change === 'newly_denied' && g.destinations.every((d) => d.startsWith('database/')));
  check(removed.length > 0 && removed.every((r) => r.endsWith(pg.id)) && gone.length > 0, 'a Tier in the what-if: its default action Deny removes edges into the database', { removed, groups: want.groups.length });
  await page.click('#whatif-result .cause-detail summary');
  // The unfolded walk is rendered after the click: wait for it rather than read it at once.
  await page
    .waitForSelector('#whatif-result .cause-detail[open] .side[data-direction="ingress"] li.step', { timeout: 5000 })
    .catch(() => {});
  const walked = await page.$$eval('#whatif-result .cause-detail[open] .side[data-direction="ingress"] li.step', (l) => l.map((x) => ({ ...x.dataset, text: x.textContent })));
  check(
    walked.some((x) => x.tier === 'security' && x.end === 'deny' && x.decides === 'true' && x.text.includes('→ DENY')),
    "the diff's cause unfolds into the walk before and after: after, the security tier's default action denies",
    walked,
  );
  await page.click('#wi-clear');
}

const { ctx, dir } = await launch();
try {
  const page = await ctx.newPage();
  if (mode === '--perf') await perfRun(page);
  else if (mode === '--follow') await followRun(page);
  else await exampleRun(page);
} catch (e) {
  check(false, 'the run completed', e.stack || String(e));
} finally {
  await ctx.close();
  fs.rmSync(dir, { recursive: true, force: true });
}
console.log(`${passes} passed, ${failures} failed`);
process.exit(failures ? 1 : 0);
