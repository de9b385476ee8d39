// The netpol HTTP API, as the UI uses it. Every call resolves to {data, revision} or throws an ApiError that
// carries the server's error object ({error, field, document?, line?}).

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error) || `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
  }
}

async function call(path, init) {
  const res = await fetch(path, init);
  const text = await res.text();
  let body = null;
  const type = res.headers.get('content-type') || '';
  if (type.startsWith('application/json')) {
    try {
      body = JSON.parse(text);
    } catch {
      body = null;
    }
  } else {
    body = text;
  }
  if (!res.ok) throw new ApiError(res.status, typeof body === 'object' ? body : { error: text });
  return { data: body, revision: res.headers.get('x-netpol-revision') };
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (Array.isArray(v)) v.forEach((x) => q.append(k, x));
    else if (v !== undefined && v !== null && v !== '') q.set(k, v);
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

/** GET /api/v1/graph: {port, namespace, selector, group, max_nodes}. */
export const graph = (params) => call(`/api/v1/graph${query(params)}`);

/** POST /api/v1/graph/whatif: the editor's text, graph params and `delete` (array of ns/name). */
export const whatIf = (text, params) =>
  call(`/api/v1/graph/whatif${query(params)}`, {
    method: 'POST',
    headers: { 'content-type': 'application/yaml' },
    body: text,
  });

/** GET /api/v1/explain (`dst_fqdn`: the name the destination was resolved from, optional). */
export const explain = (src, dst, port, dstFqdn) => call(`/api/v1/explain${query({ src, dst, port, dst_fqdn: dstFqdn })}`);

export const lint = () => call('/api/v1/lint');
export const policies = () => call('/api/v1/policies');
export const manifest = (policy) => call(`/api/v1/manifest${query({ policy })}`);
/** GET /api/v1/manifest?tier=: a tier as a Calico Tier. */
export const tierManifest = (tier) => call(`/api/v1/manifest${query({ tier })}`);
/** GET /api/v1/tiers: the tiers in evaluation order (order, default action, policies). */
export const tiers = () => call('/api/v1/tiers');

/** A flow log (text, or a Blob/File, gzip-compressed or not) as text. */
async function logText(log) {
  if (typeof log === 'string') return log;
  const head = new Uint8Array(await log.slice(0, 2).arrayBuffer());
  if (head[0] === 0x1f && head[1] === 0x8b) return new Response(log.stream().pipeThrough(new DecompressionStream('gzip'))).text();
  return log.text();
}

/**
 * POST /api/v1/graph/flows: a flow log (text, or a Blob/File: gzip is sent as is) over the graph of `params`
 * ({group, namespace, selector, port, format}); with `whatif` ({text, delete}: the what-if editor's policies and
 * deletions), also judged against them (each edge's newlyDenied / newlyAllowed).
 */
export async function graphFlows(log, params, whatif) {
  const url = `/api/v1/graph/flows${query(params)}`;
  if (!whatif) return call(url, { method: 'POST', headers: { 'content-type': 'application/x-ndjson' }, body: log });
  const body = JSON.stringify({ flows: await logText(log), whatif: whatif.text, delete: whatif.delete });
  return call(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
}
