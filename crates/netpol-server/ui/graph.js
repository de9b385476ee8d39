// The graph view: a deterministic layout (namespaces as boxes packed in rows, in name order; nodes in a grid
// inside their box, in name order) drawn with Canvas 2D. No force simulation: the same data always gives the
// same picture, so screenshots and tests are stable, and layout costs O(nodes).
//
// Drawing batches edges by style into one path each, so a few thousand edges cost a few strokes. Labels are
// drawn at a constant screen size and only when the zoom leaves room for them.

export const COLORS = {
  edge: '#64748b',
  in: '#2563eb',
  out: '#c2410c',
  added: '#16a34a',
  removed: '#dc2626',
  changed: '#7c3aed',
  iso: '#0f766e',
  some: '#d97706',
  open: '#e11d48',
  select: '#2563eb',
  highlight: '#facc15',
  text: '#1e293b',
  muted: '#64748b',
  box: '#f1f5f9',
  boxLine: '#d3dbe5',
  outside: '#6d28d9',
  observed: '#0891b2',
  observedDenied: '#dc2626',
};

/** A stable hue (0..359) for a namespace name. */
function hue(s) {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 16777619);
  }
  return (h >>> 0) % 360;
}

export const edgeKey = (src, dst) => `${src}\u0000${dst}`;

/** Sizes for a graph of `n` nodes: big cells with room for labels when small, dense cells when large. */
function metrics(n) {
  if (n <= 40) return { cw: 150, ch: 96, rmin: 10, rmax: 17, pad: 16, title: 26, gap: 34 };
  if (n <= 200) return { cw: 100, ch: 74, rmin: 7, rmax: 15, pad: 12, title: 22, gap: 26 };
  return { cw: 52, ch: 44, rmin: 4, rmax: 10, pad: 8, title: 18, gap: 18 };
}

/**
 * Positions of nodes and namespace boxes. `aspect` is the view's width/height, so that the packed boxes fill it.
 * Returns {pos: Map(id → {x, y, r, node}), boxes: [{ns, x, y, w, h, hue, focus}], width, height, m}.
 */
export function layout(nodes, aspect = 1.6) {
  const byNs = new Map();
  for (const n of nodes) {
    if (!byNs.has(n.namespace)) byNs.set(n.namespace, []);
    byNs.get(n.namespace).push(n);
  }
  const names = [...byNs.keys()].sort();
  const maxCount = Math.max(2, ...nodes.map((n) => n.count));
  // One node per namespace (grouped by namespace): no boxes, a grid of labelled nodes.
  if (names.length > 8 && nodes.length === names.length) return flatLayout(nodes, aspect, maxCount);
  const m = metrics(nodes.length);
  const radius = (count) => {
    const t = Math.log2(count + 1) / Math.log2(maxCount + 1);
    return m.rmin + (m.rmax - m.rmin) * t;
  };
  const boxes = names.map((ns) => {
    const list = byNs.get(ns).slice().sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : a.id < b.id ? -1 : 1));
    const cols = Math.max(1, Math.min(list.length, Math.ceil(Math.sqrt(list.length * 1.8))));
    const rows = Math.ceil(list.length / cols);
    const w = Math.max(cols * m.cw, 110) + 2 * m.pad;
    const h = m.title + rows * m.ch + m.pad;
    return { ns, list, cols, w, h, hue: hue(ns), focus: list.some((n) => n.focus) };
  });
  const area = boxes.reduce((s, b) => s + (b.w + m.gap) * (b.h + m.gap), 0);
  const widest = Math.max(0, ...boxes.map((b) => b.w));
  const target = Math.max(widest, Math.sqrt(area * aspect));
  // Shelf packing, left to right, top to bottom.
  let x = 0;
  let y = 0;
  let rowH = 0;
  let width = 0;
  for (const b of boxes) {
    if (x > 0 && x + b.w > target) {
      x = 0;
      y += rowH + m.gap;
      rowH = 0;
    }
    b.x = x;
    b.y = y;
    x += b.w + m.gap;
    rowH = Math.max(rowH, b.h);
    width = Math.max(width, b.x + b.w);
  }
  const height = y + rowH;
  const pos = new Map();
  for (const b of boxes) {
    const inner = b.w - 2 * m.pad;
    const cw = inner / b.cols;
    b.list.forEach((n, i) => {
      const col = i % b.cols;
      const row = Math.floor(i / b.cols);
      pos.set(n.id, {
        x: b.x + m.pad + (col + 0.5) * cw,
        y: b.y + m.title + row * m.ch + m.ch * 0.4,
        r: radius(n.count),
        node: n,
      });
    });
  }
  return { pos, boxes, width, height, m };
}

function flatLayout(nodes, aspect, maxCount) {
  const m = { cw: 130, ch: 78, rmin: 5, rmax: 13, pad: 0, title: 0, gap: 0, flat: true };
  const list = nodes.slice().sort((a, b) => (a.namespace < b.namespace ? -1 : a.namespace > b.namespace ? 1 : 0));
  // The column count that lets the grid be drawn largest in a view of this aspect.
  let cols = 1;
  let best = 0;
  for (let c = 1; c <= list.length; c++) {
    const fit = Math.min(aspect / (c * m.cw), 1 / (Math.ceil(list.length / c) * m.ch));
    if (fit > best) {
      best = fit;
      cols = c;
    }
  }
  const pos = new Map();
  list.forEach((n, i) => {
    const t = Math.log2(n.count + 1) / Math.log2(maxCount + 1);
    pos.set(n.id, {
      x: ((i % cols) + 0.5) * m.cw,
      y: Math.floor(i / cols) * m.ch + m.ch * 0.35,
      r: m.rmin + (m.rmax - m.rmin) * t,
      node: n,
    });
  });
  const rows = Math.ceil(list.length / cols);
  return { pos, boxes: [], width: cols * m.cw, height: rows * m.ch, m };
}

/**
 * Geometry of an observed edge between a node and addresses outside the cluster: a straight stroke leaving the node
 * up-right (`out`) or entering it from the up-left, as the outside marks.
 */
function outsideGeometry(p, out) {
  const a = out ? -Math.PI / 4 : (-3 * Math.PI) / 4;
  const [c, s] = [Math.cos(a), Math.sin(a)];
  const near = p.r + 3;
  const far = near + Math.max(24, p.r * 2.2);
  const [n, f] = [{ x: p.x + c * near, y: p.y + s * near }, { x: p.x + c * far, y: p.y + s * far }];
  const [from, to] = out ? [n, f] : [f, n];
  const ux = (to.x - from.x) / (far - near);
  const uy = (to.y - from.y) / (far - near);
  return { loop: false, ax: from.x, ay: from.y, cx: (from.x + to.x) / 2, cy: (from.y + to.y) / 2, bx: to.x, by: to.y, ux, uy };
}

/** Distance from a world point to an edge's curve (or loop). */
function curveDist(g, wx, wy) {
  if (g.loop) return Math.abs(Math.hypot(wx - g.cx, wy - g.cy) - g.lr);
  let d = Infinity;
  let x0 = g.ax;
  let y0 = g.ay;
  for (let i = 1; i <= 16; i++) {
    const t = i / 16;
    const x1 = (1 - t) * (1 - t) * g.ax + 2 * (1 - t) * t * g.cx + t * t * g.bx;
    const y1 = (1 - t) * (1 - t) * g.ay + 2 * (1 - t) * t * g.cy + t * t * g.by;
    d = Math.min(d, distToSegment(wx, wy, x0, y0, x1, y1));
    x0 = x1;
    y0 = y1;
  }
  return d;
}

/** Geometry of an edge: a quadratic curve bent to the left of its direction, or a loop for a node to itself. */
function geometry(a, b) {
  if (a === b) {
    const r = a.r;
    return { loop: true, cx: a.x + r * 0.95, cy: a.y - r * 0.95, lr: Math.max(5, r * 0.7) };
  }
  const dx = b.x - a.x;
  const dy = b.y - a.y;
  const len = Math.hypot(dx, dy) || 1;
  const bend = Math.min(60, Math.max(10, len * 0.12));
  const cx = (a.x + b.x) / 2 + (dy / len) * bend;
  const cy = (a.y + b.y) / 2 - (dx / len) * bend;
  const sa = Math.hypot(cx - a.x, cy - a.y) || 1;
  const sb = Math.hypot(b.x - cx, b.y - cy) || 1;
  const ax = a.x + ((cx - a.x) / sa) * (a.r + 3);
  const ay = a.y + ((cy - a.y) / sa) * (a.r + 3);
  const bx = b.x - ((b.x - cx) / sb) * (b.r + 4);
  const by = b.y - ((b.y - cy) / sb) * (b.r + 4);
  return { loop: false, ax, ay, cx, cy, bx, by, ux: (b.x - cx) / sb, uy: (b.y - cy) / sb };
}

function distToSegment(px, py, x1, y1, x2, y2) {
  const dx = x2 - x1;
  const dy = y2 - y1;
  const l2 = dx * dx + dy * dy || 1;
  const t = Math.max(0, Math.min(1, ((px - x1) * dx + (py - y1) * dy) / l2));
  return Math.hypot(px - (x1 + t * dx), py - (y1 + t * dy));
}

export class GraphView {
  constructor(canvas, tooltip, handlers) {
    this.canvas = canvas;
    this.ctx = canvas.getContext('2d');
    this.tooltip = tooltip;
    this.handlers = handlers;
    this.nodes = [];
    this.edges = [];
    this.lay = null;
    this.view = { s: 1, tx: 0, ty: 0 };
    this.moved = false;
    this.state = { selected: null, peer: null, edge: null, observed: null, highlight: new Set(), changes: null, port: '' };
    // The flow log overlay: observed edges as the server gave them, and those placed on the layout.
    this.observedRaw = null;
    this.observed = [];
    this.observedHidden = 0;
    this.dpr = 1;
    this.lastDrawMs = 0;
    this.bindEvents();
    new ResizeObserver(() => this.resize()).observe(canvas.parentElement);
    this.resize();
  }

  /** New nodes and edges (`edges[i].change` set in what-if mode). Returns the layout time in ms. */
  setData(nodes, edges) {
    const t = performance.now();
    this.nodes = nodes;
    const rect = this.canvas.getBoundingClientRect();
    this.lay = layout(nodes, rect.width > 0 && rect.height > 0 ? rect.width / rect.height : 1.6);
    this.edges = [];
    for (const e of edges) {
      const a = this.lay.pos.get(e.src);
      const b = this.lay.pos.get(e.dst);
      if (!a || !b) continue;
      this.edges.push({ e, a, b, g: geometry(a, b), key: edgeKey(e.src, e.dst) });
    }
    this.placeObserved();
    if (!this.moved) this.fit();
    return performance.now() - t;
  }

  /**
   * The flow log overlay: observed edges of `POST /api/v1/graph/flows` (`src`/`dst` a node id, or null for
   * addresses outside the cluster), or null to remove it. Edges with an end not on the graph are counted in
   * `observedHidden`, not drawn.
   */
  setObserved(list) {
    this.observedRaw = list || null;
    this.placeObserved();
    this.draw();
  }

  placeObserved() {
    this.observed = [];
    this.observedHidden = 0;
    if (!this.observedRaw || !this.lay) return;
    for (const o of this.observedRaw) {
      const a = o.src === null ? null : this.lay.pos.get(o.src);
      const b = o.dst === null ? null : this.lay.pos.get(o.dst);
      if ((o.src !== null && !a) || (o.dst !== null && !b) || (!a && !b)) {
        this.observedHidden++;
        continue;
      }
      const g = a && b ? geometry(a, b) : outsideGeometry(a || b, !b);
      this.observed.push({ o, g, key: edgeKey(o.src, o.dst) });
    }
  }

  setState(patch) {
    Object.assign(this.state, patch);
    this.draw();
  }

  resize() {
    const rect = this.canvas.getBoundingClientRect();
    this.dpr = window.devicePixelRatio || 1;
    this.canvas.width = Math.max(1, Math.round(rect.width * this.dpr));
    this.canvas.height = Math.max(1, Math.round(rect.height * this.dpr));
    if (!this.moved) this.fit(false);
    this.draw();
  }

  fit(redraw = true) {
    if (!this.lay) return;
    const rect = this.canvas.getBoundingClientRect();
    const margin = 36;
    const w = Math.max(1, this.lay.width);
    const h = Math.max(1, this.lay.height);
    const top = 44; // room for the legend
    const s = Math.min((rect.width - 2 * margin) / w, (rect.height - margin - top - 24) / h, 1.25);
    this.view.s = s > 0 ? s : 1;
    this.view.tx = (rect.width - w * this.view.s) / 2;
    this.view.ty = Math.max(top, (rect.height - h * this.view.s + top - 24) / 2);
    this.moved = false;
    if (redraw) this.draw();
  }

  toWorld(px, py) {
    return { x: (px - this.view.tx) / this.view.s, y: (py - this.view.ty) / this.view.s };
  }

  /** The style of an edge in the current state: {color, width, dash, alpha, arrow, z}. */
  edgeStyle(it) {
    const { selected, edge, changes, highlight } = this.state;
    const e = it.e;
    const partial = e.pairs !== undefined ? e.pairs < e.total : e.after < e.total && e.after > 0;
    // Many edges: thinner and fainter, so that nodes stay readable; a selection brings its edges forward.
    const n = this.edges.length;
    const many = n > 600;
    const alpha = Math.max(0.1, Math.min(0.7, 0.7 * Math.sqrt(150 / Math.max(n, 1))));
    const base = { color: COLORS.edge, width: many ? 0.8 : 1.3, dash: partial ? 'd' : '', alpha, arrow: !many, z: 0 };
    if (changes) {
      const c = e.change;
      if (c === 'added') return { color: COLORS.added, width: 3, dash: '', alpha: 1, arrow: true, z: 3 };
      if (c === 'removed') return { color: COLORS.removed, width: 3, dash: 'r', alpha: 1, arrow: true, z: 3 };
      if (c === 'changed') return { color: COLORS.changed, width: 2.5, dash: 'd', alpha: 1, arrow: true, z: 2 };
      base.alpha = 0.45;
    }
    if (edge) {
      if (it.key === edge) return { color: COLORS.select, width: 3.2, dash: base.dash, alpha: 1, arrow: true, z: 4 };
      return { ...base, alpha: Math.min(base.alpha, 0.18) };
    }
    if (selected) {
      if (e.dst === selected && e.src === selected) return { color: COLORS.out, width: 2, dash: base.dash, alpha: 0.95, arrow: true, z: 2 };
      if (e.dst === selected) return { color: COLORS.in, width: 2.2, dash: base.dash, alpha: 0.95, arrow: true, z: 2 };
      if (e.src === selected) return { color: COLORS.out, width: 2.2, dash: base.dash, alpha: 0.95, arrow: true, z: 2 };
      return { ...base, alpha: Math.min(base.alpha, 0.12), arrow: false };
    }
    if (highlight.size && !highlight.has(e.src) && !highlight.has(e.dst)) return { ...base, alpha: 0.15, arrow: false };
    return base;
  }

  draw() {
    const t = performance.now();
    const { ctx, canvas, dpr } = this;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    if (!this.lay) return 0;
    const { s, tx, ty } = this.view;
    ctx.setTransform(dpr * s, 0, 0, dpr * s, dpr * tx, dpr * ty);
    const px = 1 / s; // one screen pixel in world units
    const lay = this.lay;
    const { highlight, selected, peer } = this.state;

    // Namespace boxes and titles.
    ctx.lineWidth = px;
    for (const b of lay.boxes) {
      ctx.globalAlpha = b.focus ? 1 : 0.55;
      ctx.fillStyle = `hsl(${b.hue} 30% 96%)`;
      ctx.strokeStyle = `hsl(${b.hue} 25% 80%)`;
      roundRect(ctx, b.x, b.y, b.w, b.h, 8);
      ctx.fill();
      ctx.stroke();
      if (b.w * s >= 46) {
        ctx.fillStyle = `hsl(${b.hue} 35% 30%)`;
        ctx.font = `600 ${12 * px}px system-ui, sans-serif`;
        ctx.textBaseline = 'middle';
        ctx.textAlign = 'left';
        ctx.fillText(clip(ctx, b.ns, b.w - 16), b.x + 9, b.y + lay.m.title / 2 + 1);
      }
    }
    ctx.globalAlpha = 1;

    // The flow log overlay, under the policy edges: a wide translucent stroke per observed edge, red when the log
    // or the model denies some of it.
    if (this.observed.length) drawObserved(ctx, this.observed, px, this.state.observed);

    // Edges, batched by style; highlighted ones last.
    const buckets = new Map();
    for (const it of this.edges) {
      const st = this.edgeStyle(it);
      const k = `${st.z}|${st.color}|${st.width}|${st.dash}|${st.alpha}|${st.arrow}`;
      if (!buckets.has(k)) buckets.set(k, { st, items: [] });
      buckets.get(k).items.push(it);
    }
    const ordered = [...buckets.values()].sort((a, b) => a.st.z - b.st.z);
    for (const { st, items } of ordered) {
      ctx.globalAlpha = st.alpha;
      ctx.strokeStyle = st.color;
      ctx.fillStyle = st.color;
      ctx.lineWidth = st.width * Math.max(px, 0.6);
      ctx.setLineDash(st.dash === 'd' ? [5 * px, 3.5 * px] : st.dash === 'r' ? [7 * px, 4 * px] : []);
      ctx.beginPath();
      for (const { g } of items) {
        if (g.loop) {
          ctx.moveTo(g.cx + g.lr, g.cy);
          ctx.arc(g.cx, g.cy, g.lr, 0, Math.PI * 2);
        } else {
          ctx.moveTo(g.ax, g.ay);
          ctx.quadraticCurveTo(g.cx, g.cy, g.bx, g.by);
        }
      }
      ctx.stroke();
      if (st.arrow) {
        ctx.setLineDash([]);
        const size = Math.max(6 * px, Math.min(9, 3 + st.width * 2));
        ctx.beginPath();
        for (const { g } of items) {
          if (g.loop) continue;
          const { bx, by, ux, uy } = g;
          ctx.moveTo(bx + ux * size * 0.3, by + uy * size * 0.3);
          ctx.lineTo(bx - ux * size - uy * size * 0.5, by - uy * size + ux * size * 0.5);
          ctx.lineTo(bx - ux * size + uy * size * 0.5, by - uy * size - ux * size * 0.5);
          ctx.closePath();
        }
        ctx.fill();
      }
    }
    ctx.setLineDash([]);
    ctx.globalAlpha = 1;

    // Nodes: fill, isolation ring (left half ingress, right half egress), selection and highlight.
    const showLabels = lay.m.cw * s >= (lay.m.flat ? 56 : 64);
    let marks = 0;
    for (const p of lay.pos.values()) {
      const n = p.node;
      const h = hue(n.namespace);
      ctx.globalAlpha = n.focus ? 1 : 0.45;
      if (highlight.has(n.id)) {
        ctx.fillStyle = COLORS.highlight;
        ctx.beginPath();
        ctx.arc(p.x, p.y, p.r + 9, 0, Math.PI * 2);
        ctx.fill();
      }
      ctx.fillStyle = `hsl(${h} 55% 86%)`;
      ctx.strokeStyle = `hsl(${h} 40% 42%)`;
      ctx.lineWidth = 1.2 * px;
      ctx.beginPath();
      ctx.arc(p.x, p.y, p.r, 0, Math.PI * 2);
      ctx.fill();
      ctx.stroke();
      ring(ctx, p, n.ingress, n.count, Math.PI / 2, (Math.PI * 3) / 2, px);
      ring(ctx, p, n.egress, n.count, -Math.PI / 2, Math.PI / 2, px);
      marks += outsideMark(ctx, p, n.fromOutside, n.count, false, px) + outsideMark(ctx, p, n.toOutside, n.count, true, px);
      if (n.id === selected || n.id === peer) {
        ctx.strokeStyle = COLORS.select;
        ctx.lineWidth = 2.5 * px;
        ctx.setLineDash(n.id === peer ? [4 * px, 3 * px] : []);
        ctx.beginPath();
        ctx.arc(p.x, p.y, p.r + 7, 0, Math.PI * 2);
        ctx.stroke();
        ctx.setLineDash([]);
      }
      if (showLabels) {
        ctx.fillStyle = COLORS.text;
        ctx.textAlign = 'center';
        ctx.textBaseline = 'top';
        const size = lay.m.flat ? 10.5 : 12;
        ctx.font = `${n.id === selected ? '600 ' : ''}${size * px}px system-ui, sans-serif`;
        const maxW = lay.m.cw - (lay.m.flat ? 4 : 8);
        ctx.fillText(clip(ctx, n.name, maxW), p.x, p.y + p.r + 7);
        ctx.fillStyle = COLORS.muted;
        ctx.font = `${(size - 1.5) * px}px system-ui, sans-serif`;
        ctx.fillText(`${n.count} pod${n.count === 1 ? '' : 's'}`, p.x, p.y + p.r + 7 + (size + 2) * px);
      }
    }
    ctx.globalAlpha = 1;
    this.outsideMarks = marks;
    this.lastDrawMs = performance.now() - t;
    return this.lastDrawMs;
  }

  // ---- interaction ----

  nodeAt(wx, wy) {
    if (!this.lay) return null;
    let best = null;
    let bestD = Infinity;
    const slack = 4 / this.view.s;
    for (const p of this.lay.pos.values()) {
      const d = Math.hypot(p.x - wx, p.y - wy);
      if (d <= p.r + slack && d < bestD) {
        best = p.node;
        bestD = d;
      }
    }
    return best;
  }

  /** The graph edge at a world point; else the observed edge there, as `{observed}`; else null. */
  edgeAt(wx, wy) {
    const tol = 6 / this.view.s;
    let best = null;
    let bestD = tol;
    for (const it of this.edges) {
      const d = curveDist(it.g, wx, wy);
      if (d < bestD) {
        bestD = d;
        best = it.e;
      }
    }
    if (best) return best;
    for (const it of this.observed) {
      const d = curveDist(it.g, wx, wy);
      if (d < bestD) {
        bestD = d;
        best = { observed: it.o };
      }
    }
    return best;
  }

  /** Screen position (CSS px, relative to the canvas) of a node's centre, for tests and the tooltip. */
  screenPos(id) {
    const p = this.lay && this.lay.pos.get(id);
    if (!p) return null;
    return { x: p.x * this.view.s + this.view.tx, y: p.y * this.view.s + this.view.ty };
  }

  /** Screen position of the middle of an edge's curve (for tests); `observed`: of an observed edge. */
  edgePos(src, dst, observed = false) {
    const it = observed
      ? this.observed.find((x) => x.o.src === src && x.o.dst === dst)
      : this.edges.find((x) => x.e.src === src && x.e.dst === dst);
    if (!it) return null;
    const g = it.g;
    const wx = g.loop ? g.cx + g.lr : 0.25 * g.ax + 0.5 * g.cx + 0.25 * g.bx;
    const wy = g.loop ? g.cy : 0.25 * g.ay + 0.5 * g.cy + 0.25 * g.by;
    return { x: wx * this.view.s + this.view.tx, y: wy * this.view.s + this.view.ty };
  }

  bindEvents() {
    const c = this.canvas;
    let down = null;
    c.addEventListener('pointerdown', (ev) => {
      down = { x: ev.offsetX, y: ev.offsetY, tx: this.view.tx, ty: this.view.ty, drag: false };
      c.setPointerCapture(ev.pointerId);
    });
    c.addEventListener('pointermove', (ev) => {
      if (down) {
        const dx = ev.offsetX - down.x;
        const dy = ev.offsetY - down.y;
        if (!down.drag && Math.hypot(dx, dy) > 3) {
          down.drag = true;
          c.classList.add('dragging');
          this.hideTip();
        }
        if (down.drag) {
          this.view.tx = down.tx + dx;
          this.view.ty = down.ty + dy;
          this.moved = true;
          this.draw();
        }
        return;
      }
      this.hover(ev.offsetX, ev.offsetY);
    });
    c.addEventListener('pointerup', (ev) => {
      const d = down;
      down = null;
      c.classList.remove('dragging');
      if (!d || d.drag) return;
      const w = this.toWorld(ev.offsetX, ev.offsetY);
      const n = this.nodeAt(w.x, w.y);
      if (n) return this.handlers.node(n, ev.shiftKey);
      const e = this.edgeAt(w.x, w.y);
      if (e && e.observed) return this.handlers.observed(e.observed);
      if (e) return this.handlers.edge(e);
      this.handlers.background();
    });
    c.addEventListener('pointerleave', () => this.hideTip());
    c.addEventListener(
      'wheel',
      (ev) => {
        ev.preventDefault();
        const f = Math.exp(-ev.deltaY * 0.0015);
        const s = Math.min(8, Math.max(0.05, this.view.s * f));
        const w = this.toWorld(ev.offsetX, ev.offsetY);
        this.view.s = s;
        this.view.tx = ev.offsetX - w.x * s;
        this.view.ty = ev.offsetY - w.y * s;
        this.moved = true;
        this.draw();
      },
      { passive: false },
    );
  }

  hover(x, y) {
    const w = this.toWorld(x, y);
    const n = this.nodeAt(w.x, w.y);
    const e = n ? null : this.edgeAt(w.x, w.y);
    this.canvas.classList.toggle('pointer', Boolean(n || e));
    const text = n ? this.handlers.nodeTip(n) : e && e.observed ? this.handlers.observedTip(e.observed) : e ? this.handlers.edgeTip(e) : '';
    if (!text) return this.hideTip();
    this.tooltip.textContent = text;
    this.tooltip.hidden = false;
    const wrap = this.canvas.getBoundingClientRect();
    const tw = this.tooltip.offsetWidth;
    this.tooltip.style.left = `${Math.min(x + 14, wrap.width - tw - 8)}px`;
    this.tooltip.style.top = `${y + 16}px`;
  }

  hideTip() {
    this.tooltip.hidden = true;
  }
}

/**
 * The observed edges: one wide translucent stroke each, with an arrowhead; red when the log or the model denies
 * some of the edge's connections; dashed red, on top, when the what-if would deny some that are allowed now.
 * `selected` (an edge key) is drawn opaque.
 */
function drawObserved(ctx, items, px, selected) {
  const w = 6 * Math.max(px, 0.6);
  const kind = (o) => (o.newlyDenied > 0 ? 2 : o.deniedAny ? 1 : 0);
  for (const k of [0, 1, 2]) {
    for (const sel of [false, true]) {
      const list = items.filter((it) => kind(it.o) === k && (it.key === selected) === sel);
      if (!list.length) continue;
      const color = k ? COLORS.observedDenied : COLORS.observed;
      ctx.globalAlpha = sel ? 0.9 : [0.4, 0.5, 0.8][k];
      ctx.strokeStyle = color;
      ctx.fillStyle = color;
      ctx.lineWidth = sel ? w * 1.4 : w;
      ctx.lineCap = k === 2 ? 'butt' : 'round';
      ctx.setLineDash(k === 2 ? [2 * w, 1.2 * w] : []);
      ctx.beginPath();
      for (const { g } of list) {
        if (g.loop) {
          ctx.moveTo(g.cx + g.lr, g.cy);
          ctx.arc(g.cx, g.cy, g.lr, 0, Math.PI * 2);
        } else {
          ctx.moveTo(g.ax, g.ay);
          ctx.quadraticCurveTo(g.cx, g.cy, g.bx, g.by);
        }
      }
      ctx.stroke();
      ctx.setLineDash([]);
      const size = Math.max(9 * px, 7);
      ctx.beginPath();
      for (const { g } of list) {
        if (g.loop) continue;
        const { bx, by, ux, uy } = g;
        ctx.moveTo(bx + ux * size * 0.3, by + uy * size * 0.3);
        ctx.lineTo(bx - ux * size - uy * size * 0.6, by - uy * size + ux * size * 0.6);
        ctx.lineTo(bx - ux * size + uy * size * 0.6, by - uy * size - ux * size * 0.6);
        ctx.closePath();
      }
      ctx.fill();
    }
  }
  ctx.lineCap = 'butt';
  ctx.globalAlpha = 1;
}

/** Half ring of isolation: solid teal when every pod is isolated, amber when some are, dashed red when none. */
/**
 * A short arrow at a node for traffic with addresses outside the cluster: leaving it up-right (egress, `out`) or
 * entering it from the up-left (ingress). Solid when every pod may use any address, dashed otherwise. Returns 1
 * when drawn.
 */
function outsideMark(ctx, p, acc, count, out, px) {
  if (!acc || !acc.pods) return 0;
  const a = out ? -Math.PI / 4 : (-3 * Math.PI) / 4;
  const [c, s] = [Math.cos(a), Math.sin(a)];
  const r0 = p.r + 2.5 * px;
  const r1 = r0 + Math.max(9 * px, p.r * 0.9);
  const head = Math.max(4 * px, p.r * 0.35);
  ctx.save();
  ctx.strokeStyle = COLORS.outside;
  ctx.fillStyle = COLORS.outside;
  ctx.lineWidth = 1.6 * px;
  ctx.setLineDash(acc.anyPods >= count ? [] : [3 * px, 2 * px]);
  ctx.beginPath();
  ctx.moveTo(p.x + c * r0, p.y + s * r0);
  ctx.lineTo(p.x + c * r1, p.y + s * r1);
  ctx.stroke();
  // The head points away from the node (egress) or at it (ingress).
  const [tip, dir] = out ? [r1, 1] : [r0, -1];
  const [tx, ty] = [p.x + c * tip, p.y + s * tip];
  ctx.setLineDash([]);
  ctx.beginPath();
  ctx.moveTo(tx + c * dir * head * 0.2, ty + s * dir * head * 0.2);
  ctx.lineTo(tx - c * dir * head - s * head * 0.55, ty - s * dir * head + c * head * 0.55);
  ctx.lineTo(tx - c * dir * head + s * head * 0.55, ty - s * dir * head - c * head * 0.55);
  ctx.closePath();
  ctx.fill();
  ctx.restore();
  return 1;
}

function ring(ctx, p, iso, count, from, to, px) {
  const r = p.r + 3;
  const gap = 0.16; // radians between the two halves, so that they read as two marks
  ctx.beginPath();
  ctx.arc(p.x, p.y, r, from + gap, to - gap);
  if (iso.isolatedPods >= count && count > 0) {
    ctx.strokeStyle = COLORS.iso;
    ctx.lineWidth = Math.max(2.6 * px, p.r * 0.22);
    ctx.setLineDash([]);
  } else if (iso.isolatedPods > 0) {
    ctx.strokeStyle = COLORS.some;
    ctx.lineWidth = Math.max(2.6 * px, p.r * 0.22);
    ctx.setLineDash([]);
  } else {
    ctx.strokeStyle = COLORS.open;
    ctx.lineWidth = Math.max(1.4 * px, p.r * 0.1);
    ctx.setLineDash([3 * px, 2.5 * px]);
  }
  ctx.stroke();
  ctx.setLineDash([]);
}

function roundRect(ctx, x, y, w, h, r) {
  ctx.beginPath();
  ctx.moveTo(x + r, y);
  ctx.arcTo(x + w, y, x + w, y + h, r);
  ctx.arcTo(x + w, y + h, x, y + h, r);
  ctx.arcTo(x, y + h, x, y, r);
  ctx.arcTo(x, y, x + w, y, r);
  ctx.closePath();
}

/** `text`, shortened with an ellipsis to fit `maxW` (world units, in the current font). */
function clip(ctx, text, maxW) {
  if (ctx.measureText(text).width <= maxW) return text;
  let lo = 0;
  let hi = text.length;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (ctx.measureText(`${text.slice(0, mid)}…`).width <= maxW) lo = mid;
    else hi = mid - 1;
  }
  return `${text.slice(0, lo)}…`;
}
