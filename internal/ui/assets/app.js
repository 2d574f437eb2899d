// autoprof ui: the page over the JSON API of docs/ui.md. Plain script,
// no library; everything it shows comes from /api/.
'use strict';

const $ = (sel) => document.querySelector(sel);
const el = (tag, attrs = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return e;
};
const SVG = 'http://www.w3.org/2000/svg';
const svg = (tag, attrs = {}, text) => {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
};

async function api(path, opts = {}) {
  const init = { credentials: 'same-origin', headers: {} };
  if (opts.body !== undefined) {
    init.method = 'POST';
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(opts.body);
  } else if (opts.method) {
    init.method = opts.method;
    init.headers['Content-Type'] = 'application/json';
  }
  const r = await fetch(path, init);
  const data = await r.json().catch(() => ({ error: r.statusText }));
  if (!r.ok) throw new Error(data.error || r.statusText);
  return data;
}

const state = {
  backends: ['fentry', 'kprobe', 'splice', 'tracepoint'],
  group: '',
  fn: null,
  plan: [],          // {spec, launch, splashdown}
  series: {},        // experiment id -> instrument -> [calls/s...]
  latest: {},        // experiment id -> last reading
  exps: {},          // experiment id -> view
};

// ---- views
function show(view) {
  for (const b of document.querySelectorAll('.tab')) b.classList.toggle('active', b.dataset.view === view);
  for (const s of document.querySelectorAll('.view')) s.classList.toggle('hidden', s.id !== 'view-' + view);
  document.body.dataset.view = view;
}
for (const b of document.querySelectorAll('.tab')) b.addEventListener('click', () => show(b.dataset.view));

// ---- caps
async function loadCaps() {
  const caps = await api('/api/caps');
  const box = $('#caps');
  box.textContent = 'kernel ' + caps.system.release + ': ';
  const sel = $('#exp-backend');
  for (const c of caps.capabilities) {
    if (c.kind !== 'backend') continue;
    box.append(el('span', { class: c.available ? 'ok' : 'no', title: c.available ? c.use : c.reason }, c.name + (c.available ? ' ✓' : ' ✗')), ' ');
    if (c.available && state.backends.includes(c.name)) {
      sel.append(el('option', { value: c.name }, c.name));
      $('#hunt-backend').append(el('option', { value: c.name }, c.name));
    }
  }
}

// ---- symbols
let symTimer = null;
function symbolsSoon() { clearTimeout(symTimer); symTimer = setTimeout(loadSymbols, 150); }
$('#q').addEventListener('input', symbolsSoon);
$('#regex').addEventListener('change', symbolsSoon);

function verdictCell(why) {
  if (why === '') return el('td', { class: 'b b-ok', title: 'can instrument' }, '✓');
  if (why.startsWith('?')) return el('td', { class: 'b b-unk', title: why.slice(2) }, '?');
  return el('td', { class: 'b b-no', title: why }, '✗');
}

async function loadSymbols() {
  const q = new URLSearchParams({ q: $('#q').value, regex: $('#regex').checked ? '1' : '0', group: state.group });
  let rep;
  try {
    rep = await api('/api/symbols?' + q);
    $('#sym-error').textContent = '';
  } catch (e) {
    $('#sym-error').textContent = e.message;
    return;
  }
  $('#sym-total').textContent = rep.total + ' functions match' + (rep.symbols.length < rep.total ? ', ' + rep.symbols.length + ' shown' : '');
  const groups = $('#groups');
  groups.replaceChildren(el('button', { class: state.group === '' ? 'active' : '', onclick: () => { state.group = ''; loadSymbols(); } }, 'all ' + rep.total));
  for (const g of rep.groups) {
    groups.append(el('button', { class: state.group === g.group ? 'active' : '', 'data-group': g.group, onclick: () => { state.group = g.group; loadSymbols(); } }, g.group + ' ' + g.count));
  }
  const body = $('#symtab tbody');
  body.replaceChildren();
  for (const s of rep.symbols) {
    const tr = el('tr', { 'data-spec': s.spec },
      el('td', { class: 'fn' }, el('a', { onclick: () => openFunction(s.spec) }, s.name)),
      el('td', {}, s.module || ''), el('td', {}, s.group), el('td', { class: 'num' }, s.size));
    for (const b of state.backends) {
      const c = verdictCell(s.backends[b]);
      c.dataset.backend = b;
      tr.append(c);
    }
    tr.append(el('td', {}, el('button', { class: 'attach', onclick: () => openAttach(s.spec, 'timer') }, 'attach…')));
    body.append(tr);
  }
}

// ---- function view
async function openFunction(spec) {
  show('function');
  $('#fn-empty').textContent = 'loading ' + spec + '…';
  $('#fn-empty').classList.remove('hidden');
  $('#fn').classList.add('hidden');
  let f;
  try {
    f = await api('/api/function?' + new URLSearchParams({ name: spec }));
  } catch (e) {
    $('#fn-empty').textContent = e.message;
    return;
  }
  state.fn = f;
  $('#fn-empty').classList.add('hidden');
  $('#fn').classList.remove('hidden');
  $('#fn-name').textContent = f.name;
  $('#fn-module').textContent = f.module ? '[' + f.module + ']' : '';
  $('#fn-meta').textContent = `${f.address}, ${f.size} bytes, ${f.blocks.length} blocks, ${f.sites.length} call sites, ${f.group}; ${f.source}`;
  const v = $('#fn-backends');
  v.replaceChildren();
  for (const b of state.backends) {
    const why = f.backends[b];
    v.append(el('div', { class: why === '' ? 'b-ok' : why.startsWith('?') ? 'b-unk' : 'b-no', 'data-backend': b }, b + ': ' + (why === '' ? 'can time it' : why)));
  }
  const callees = $('#fn-callees');
  callees.replaceChildren();
  for (const s of f.sites) callees.append(siteItem(s, s.target, '+0x' + s.off.toString(16)));
  if (!f.sites.length) callees.append(el('li', { class: 'muted' }, 'no call sites'));
  $('#fn-callers').replaceChildren(el('li', { class: 'muted' }, 'press Callers (the first time decodes the whole kernel)'));
  drawCFG(f);
  drawAsm(f);
}

function siteItem(s, name, where) {
  const li = el('li', {}, where + ' ' + s.kind + (s.jump && s.kind !== 'tail' ? ' jmp' : '') + ' ');
  if (name) li.append(el('a', { class: 'fn', onclick: () => openFunction(name) }, name));
  if (s.note) li.append(el('span', { class: 'muted' }, ' ' + s.note));
  return li;
}

$('#fn-callers-load').addEventListener('click', async () => {
  const ul = $('#fn-callers');
  ul.replaceChildren(el('li', { class: 'muted' }, 'decoding…'));
  try {
    const r = await api('/api/calls?' + new URLSearchParams({ name: state.fn.name, dir: 'callers' }));
    ul.replaceChildren();
    for (const s of r.sites) ul.append(siteItem(s, s.from, ''));
    if (!r.sites.length) ul.append(el('li', { class: 'muted' }, 'no direct callers'));
  } catch (e) {
    ul.replaceChildren(el('li', { class: 'error' }, e.message));
  }
});
$('#fn-attach').addEventListener('click', () => openAttach(state.fn.spec, 'timer'));

// drawCFG draws the blocks in address order, one column: fall-through
// edges straight down, jumps as arcs on the right (back edges in red),
// call sites as links inside the blocks.
function drawCFG(f) {
  const g = $('#cfg');
  g.replaceChildren();
  const LH = 14, W = 560, X = 16, GAP = 22, MAXL = 14;
  const sites = {};
  for (const s of f.sites) sites[s.off] = s;
  const boxes = {};
  let y = 10;
  // observed(off): the targets the experiments captured at an indirect
  // site, at most four shown under it.
  const observed = (off) => ((f.observed || {})[off] || []).slice(0, 4);
  f.blocks.forEach((b, i) => {
    const lines = b.insts.slice(0, MAXL);
    const extra = lines.reduce((n, inst) => n + observed(inst.off).length, 0);
    const h = (lines.length + extra + 1) * LH + 8 + (b.insts.length > MAXL ? LH : 0);
    boxes[b.start] = { x: X, y, h, i };
    const grp = svg('g', { class: 'blk' + (b.start === 0 ? ' entry' : ''), 'data-start': b.start });
    grp.append(svg('rect', { x: X, y, width: W, height: h, rx: 3 }));
    const mark = b.insts.length && b.insts[0].place ? ' [' + b.insts[0].place + ']' : '';
    grp.append(svg('text', { x: X + 6, y: y + LH, class: 'hd' }, `block +0x${b.start.toString(16)}..+0x${b.end.toString(16)}${mark}`));
    let row = 2;
    lines.forEach((inst) => {
      const s = sites[inst.off];
      let cls = '';
      if (s && s.target && s.kind !== 'indirect') cls = 'call';
      else if (s) cls = 'ind';
      let t = `+${inst.off.toString(16).padStart(3)} ${inst.text}`;
      if (t.length > 78) t = t.slice(0, 77) + '…';
      const tx = svg('text', { x: X + 6, y: y + row++ * LH, class: cls }, t);
      if (cls === 'call') {
        tx.dataset.target = s.target;
        tx.addEventListener('click', (ev) => { ev.stopPropagation(); openFunction(s.target); });
        tx.append(svg('title', {}, 'open ' + s.target));
      } else if (s && s.note) {
        tx.append(svg('title', {}, s.note));
      }
      grp.append(tx);
      for (const o of observed(inst.off)) {
        const ot = svg('text', { x: X + 46, y: y + row++ * LH, class: 'call observed', 'data-target': o.func }, `↳ ${o.func}  (${o.calls} calls observed)`);
        ot.addEventListener('click', (ev) => { ev.stopPropagation(); openFunction(o.func); });
        ot.append(svg('title', {}, 'an indirect call target the experiments captured here: open ' + o.func));
        grp.append(ot);
      }
    });
    if (b.insts.length > MAXL) grp.append(svg('text', { x: X + 6, y: y + row * LH, class: 'hd' }, `… ${b.insts.length - MAXL} more`));
    grp.addEventListener('click', () => openAttach(b.start === 0 ? f.spec : `${f.spec}+0x${b.start.toString(16)}`, b.start === 0 ? 'timer' : 'entry'));
    g.append(grp);
    y += h + GAP;
  });
  let lane = 0;
  for (const b of f.blocks) {
    const from = boxes[b.start];
    for (const s of b.succs) {
      const to = boxes[s];
      if (!to) continue;
      if (to.i === from.i + 1) {
        g.append(svg('path', { class: 'e fall', d: `M${X + 40} ${from.y + from.h} V${to.y}`, 'marker-end': 'url(#arrow)' }));
        continue;
      }
      lane = (lane % 12) + 1;
      const x1 = X + W, off = 14 + lane * 9;
      const y1 = from.y + from.h - 6, y2 = to.y + 8;
      g.append(svg('path', { class: 'e' + (to.i <= from.i ? ' back' : ''), d: `M${x1} ${y1} H${x1 + off} V${y2} H${x1 + 2}`, 'marker-end': 'url(#arrow)' }));
    }
    if (b.leaves) g.append(svg('text', { x: X + W - 40, y: from.y + from.h - 4, class: 'hd' }, 'out ⇥'));
  }
  const defs = svg('defs');
  const m = svg('marker', { id: 'arrow', viewBox: '0 0 8 8', refX: 8, refY: 4, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' });
  m.append(svg('path', { d: 'M0 0 L8 4 L0 8 z', fill: '#6b7280' }));
  defs.append(m);
  g.prepend(defs);
  g.setAttribute('width', X + W + 14 + 13 * 9 + 10);
  g.setAttribute('height', y);
}

function drawAsm(f) {
  const lines = [];
  for (const b of f.blocks) {
    lines.push(`block +0x${b.start.toString(16)}..+0x${b.end.toString(16)}` + (b.succs.length ? ' -> ' + b.succs.map((s) => '+0x' + s.toString(16)).join(' ') : '') + (b.leaves ? ' out' : ''));
    for (const i of b.insts) {
      const mark = ({ entry: 'E', block: 'B', targets: 'T' }[i.place] || ' ') + (i.branch_target ? '>' : ' ');
      lines.push(`${mark} ${i.address.slice(2)} +${('0x' + i.off.toString(16)).padEnd(6)} ${i.bytes.padEnd(24).slice(0, 24)} ${i.text}${i.note ? '   # ' + i.note : ''}`);
      for (const o of ((f.observed || {})[i.off] || [])) lines.push(`${' '.repeat(20)}-> ${o.func} (${o.calls} calls observed)`);
    }
    lines.push('');
  }
  $('#fn-asm').textContent = lines.join('\n');
}

// ---- attach dialog
function openAttach(point, kind) {
  $('#at-point').value = point;
  $('#at-kind').value = kind;
  $('#at-launch').value = '0s';
  $('#at-splashdown').value = '';
  $('#at-backend').replaceChildren(...[...$('#exp-backend').options].map((o) => el('option', { value: o.value }, o.textContent)));
  $('#at-backend').value = $('#exp-backend').value;
  $('#at-target').value = $('#exp-target').value;
  $('#at-target-value').value = $('#exp-target-value').value;
  $('#at-target-value').classList.toggle('hidden', $('#at-target').value === 'system');
  checkAttach();
  $('#attach').showModal();
}
// checkAttach shows what every backend says of the spec the dialog makes.
// The verdicts shown are always the current spec's: the last ones go at
// once, and an answer that comes after the spec changed again is dropped.
async function checkAttach() {
  const v = $('#at-verdicts');
  const spec = $('#at-point').value.trim() + ':' + $('#at-kind').value;
  v.replaceChildren();
  v.dataset.spec = spec;
  try {
    const r = await api('/api/check?' + new URLSearchParams({ spec }));
    if (v.dataset.spec !== spec) return;
    v.replaceChildren();
    for (const b of state.backends) {
      const why = r.backends[b];
      v.append(el('div', { class: why === '' ? 'b-ok' : why.startsWith('?') ? 'b-unk' : 'b-no', 'data-backend': b }, b + ': ' + (why === '' ? 'can place it' : why)));
    }
  } catch (e) {
    if (v.dataset.spec === spec) v.replaceChildren(el('div', { class: 'b-no' }, e.message));
  }
}
$('#at-kind').addEventListener('change', checkAttach);
$('#at-point').addEventListener('change', checkAttach);
$('#at-target').addEventListener('change', () => $('#at-target-value').classList.toggle('hidden', $('#at-target').value === 'system'));
// The dialog's values are taken when it is submitted with Add: its close
// event comes later, after another dialog may have been opened over them.
$('#attach-form').addEventListener('submit', (ev) => {
  if (ev.submitter?.value !== 'add') return;
  $('#exp-backend').value = $('#at-backend').value;
  $('#exp-target').value = $('#at-target').value;
  $('#exp-target-value').value = $('#at-target-value').value;
  $('#exp-target-value').classList.toggle('hidden', $('#exp-target').value === 'system');
  addToPlan($('#at-point').value.trim() + ':' + $('#at-kind').value, $('#at-launch').value.trim(), $('#at-splashdown').value.trim());
  show('experiment');
});

// ---- experiment draft
function addToPlan(spec, launch, splashdown) {
  state.plan.push({ spec, launch: launch || '0s', splashdown: splashdown || '' });
  drawPlan();
}
function drawPlan() {
  const body = $('#plan tbody');
  body.replaceChildren();
  state.plan.forEach((p, i) => {
    const launch = el('input', { value: p.launch, size: 6 });
    launch.addEventListener('change', () => { p.launch = launch.value.trim(); });
    const splash = el('input', { value: p.splashdown, size: 8, placeholder: 'at the end' });
    splash.addEventListener('change', () => { p.splashdown = splash.value.trim(); });
    body.append(el('tr', {}, el('td', { class: 'fn' }, p.spec), el('td', {}, launch), el('td', {}, splash),
      el('td', {}, el('button', { onclick: () => { state.plan.splice(i, 1); drawPlan(); } }, 'remove'))));
  });
  if (!state.plan.length) body.append(el('tr', {}, el('td', { class: 'muted', colspan: 4 }, 'no instruments: attach one from a function or type a spec below')));
}
$('#plan-add').addEventListener('click', () => {
  const s = $('#plan-spec').value.trim();
  if (s) addToPlan(s, '0s', '');
  $('#plan-spec').value = '';
});
$('#exp-target').addEventListener('change', () => $('#exp-target-value').classList.toggle('hidden', $('#exp-target').value === 'system'));

// experimentFile is the draft as the file probe --experiment reads.
function experimentFile() {
  const target = {};
  const tv = $('#exp-target-value').value.trim();
  if ($('#exp-target').value === 'pids') target.pids = tv.split(/[\s,]+/).filter(Boolean).map(Number);
  if ($('#exp-target').value === 'cgroup') target.cgroup = tv;
  const f = {
    duration: $('#exp-duration').value.trim() || '0s',
    interval: $('#exp-interval').value.trim() || '1s',
    target,
    instruments: state.plan.map((p) => {
      const e = { spec: p.spec, launch: p.launch || '0s' };
      if (p.splashdown) e.splashdown = p.splashdown;
      return e;
    }),
  };
  const max = parseFloat($('#exp-max-overhead').value);
  if (max > 0) f.max_overhead_pct = max;
  return f;
}
function loadDraft(e) {
  $('#exp-duration').value = e.duration || '0s';
  $('#exp-interval').value = e.interval || '1s';
  $('#exp-max-overhead').value = e.max_overhead_pct || '';
  const t = e.target || {};
  $('#exp-target').value = t.pids && t.pids.length ? 'pids' : t.cgroup ? 'cgroup' : 'system';
  $('#exp-target-value').value = t.pids && t.pids.length ? t.pids.join(',') : t.cgroup || '';
  $('#exp-target-value').classList.toggle('hidden', $('#exp-target').value === 'system');
  state.plan = (e.instruments || []).map((i) => ({ spec: i.spec, launch: i.launch || '0s', splashdown: i.splashdown && i.splashdown !== '0s' ? i.splashdown : '' }));
  drawPlan();
}

$('#exp-start').addEventListener('click', async () => {
  $('#exp-error').textContent = '';
  try {
    await api('/api/experiments', { body: { name: $('#exp-name').value.trim(), backend: $('#exp-backend').value, out: $('#exp-out').value.trim(), experiment: experimentFile() } });
  } catch (e) {
    $('#exp-error').textContent = e.message;
  }
});
$('#file-save').addEventListener('click', async () => {
  $('#exp-error').textContent = '';
  try {
    await api('/api/experiment-file', { body: { name: $('#file-name').value.trim(), experiment: experimentFile() } });
    await loadFiles();
  } catch (e) {
    $('#exp-error').textContent = e.message;
  }
});
$('#file-load').addEventListener('click', async () => {
  $('#exp-error').textContent = '';
  try {
    const f = await api('/api/experiment-file?' + new URLSearchParams({ name: $('#file-list').value }));
    loadDraft(f.experiment);
  } catch (e) {
    $('#exp-error').textContent = e.message;
  }
});
async function loadFiles() {
  const r = await api('/api/experiment-files');
  $('#file-list').replaceChildren(...r.files.map((f) => el('option', { value: f }, f)));
}

// ---- experiments and live data
function ns(v) {
  if (!v) return '-';
  if (v < 1e3) return v.toFixed(0) + 'ns';
  if (v < 1e6) return (v / 1e3).toFixed(1) + 'µs';
  if (v < 1e9) return (v / 1e6).toFixed(1) + 'ms';
  return (v / 1e9).toFixed(2) + 's';
}
function pct(v, base) { return base ? (100 * (v || 0)).toFixed(0) + '%' : '-'; }

function spark(values) {
  const s = svg('svg', { class: 'spark', viewBox: '0 0 160 28', preserveAspectRatio: 'none' });
  const max = Math.max(1, ...values);
  const pts = values.slice(-40).map((v, i, a) => `${(i / Math.max(1, a.length - 1)) * 158 + 1},${27 - (v / max) * 25}`).join(' ');
  s.append(svg('polyline', { points: pts }));
  return s;
}

// seconds parses a Go duration ("1m30s", "500ms") into seconds.
function seconds(d) {
  if (typeof d === 'number') return d;
  const unit = { ns: 1e-9, us: 1e-6, 'µs': 1e-6, ms: 1e-3, s: 1, m: 60, h: 3600 };
  let t = 0;
  for (const m of String(d || '').matchAll(/([\d.]+)(ns|us|µs|ms|s|m|h)/g)) t += Number(m[1]) * unit[m[2]];
  return t;
}

// timeline draws each instrument's launch and splashdown (GILK's) as a
// bar, and where the experiment is now.
function timeline(x, now) {
  const ins = x.experiment.instruments || [];
  const end = Math.max(seconds(x.experiment.duration), now, ...ins.map((i) => Math.max(seconds(i.launch), seconds(i.splashdown))), 1);
  const W = 480, L = 8, H = 14 * ins.length + 20;
  const s = svg('svg', { class: 'timeline', width: W + 2 * L, height: H });
  const X = (t) => L + (W * Math.min(t, end)) / end;
  ins.forEach((i, k) => {
    const a = seconds(i.launch), b = seconds(i.splashdown) || (seconds(x.experiment.duration) || end);
    s.append(svg('rect', { x: X(a), y: 4 + 14 * k, width: Math.max(2, X(b) - X(a)), height: 10, class: 'bar' }));
    s.append(svg('text', { x: X(a) + 3, y: 12 + 14 * k, class: 'lbl' }, i.spec));
  });
  s.append(svg('line', { x1: X(now), x2: X(now), y1: 0, y2: H - 14, class: 'now' }));
  s.append(svg('text', { x: L, y: H - 3, class: 'lbl' }, '0s'));
  s.append(svg('text', { x: L + W, y: H - 3, class: 'lbl', 'text-anchor': 'end' }, end.toFixed(end < 10 ? 1 : 0) + 's' + (seconds(x.experiment.duration) ? '' : ' so far (until Stop)')));
  return s;
}

function drawExperiments() {
  const box = $('#experiments');
  box.replaceChildren();
  const ids = Object.keys(state.exps).map(Number).sort((a, b) => b - a);
  let running = 0;
  for (const id of ids) {
    const x = state.exps[id];
    if (x.state === 'running') running++;
    const card = el('div', { class: 'exp', id: 'exp-' + id, 'data-state': x.state });
    const hd = el('div', { class: 'hd' }, el('strong', {}, x.name), el('span', { class: 'state state-' + x.state }, x.state),
      el('span', { class: 'muted' }, `${x.backend} backend, ${targetText(x.experiment.target)}, live: ${x.launched.join(', ') || 'none yet'}` + (x.out ? `, output ${x.out}/` : '')));
    if (x.state === 'running') hd.append(el('button', { class: 'stop', onclick: () => api(`/api/experiments/${id}/stop`, { method: 'POST' }).catch((e) => alert(e.message)) }, 'Stop'));
    card.append(hd);
    if (x.error) card.append(el('div', { class: 'error' }, x.error));
    const warnings = x.state !== 'running' && x.summary && x.summary.warnings ? x.summary.warnings : x.warnings || [];
    for (const w of warnings) card.append(el('div', { class: 'warning' }, 'warning: ' + w));
    const r = state.latest[id];
    const now = x.state === 'running' ? (r ? r.elapsed_s : 0) : x.summary ? x.summary.duration_s : 0;
    card.append(timeline(x, now));
    const rows = x.state !== 'running' && x.summary ? x.summary.instruments : r ? r.instruments : [];
    const t = el('table', { class: 'grid live' }, el('thead', {}, el('tr', {},
      ...['instrument', 'calls/s', 'calls', 'mean', 'p50', 'p99', 'on-CPU', 'off-CPU', 'calls/s over time'].map((h) => el('th', {}, h)))));
    const tb = el('tbody');
    for (const s of rows) {
      tb.append(el('tr', { 'data-instrument': s.instrument }, el('td', { class: 'fn' }, s.instrument),
        el('td', { class: 'num cps' }, (s.calls_per_s || 0).toFixed(1)), el('td', { class: 'num calls' }, s.calls || 0),
        el('td', { class: 'num' }, ns(s.mean_ns)), el('td', { class: 'num' }, ns(s.p50_ns)), el('td', { class: 'num' }, ns(s.p99_ns)),
        el('td', { class: 'num' }, pct(s.oncpu_share, s.incl_ns)), el('td', { class: 'num' }, pct(s.offcpu_share, s.incl_ns)),
        el('td', {}, spark((state.series[id] || {})[s.instrument] || []))));
    }
    t.append(tb);
    card.append(t);
    if (x.state === 'running' && r && r.overhead_cpu !== undefined) card.append(el('div', { class: 'muted overhead' }, `instruments' own CPU time in the last interval: ${(100 * r.overhead_cpu).toFixed(3)}% of one CPU`));
    if (x.state !== 'running' && x.summary) card.append(el('div', { class: 'muted' }, `totals over ${x.summary.duration_s.toFixed(1)} s`));
    if (x.summary && x.summary.stopped) card.append(el('div', { class: 'warning stopped' }, 'stopped: ' + x.summary.stopped));
    box.append(card);
  }
  $('#running-count').textContent = running ? '(' + running + ' running)' : '';
}
function targetText(t) {
  if (t && t.pids && t.pids.length) return 'pids ' + t.pids.join(',');
  if (t && t.cgroup) return 'cgroup ' + t.cgroup;
  return 'whole system';
}

// ---- hunts
$('#hunt-target').addEventListener('change', () => $('#hunt-target-value').classList.toggle('hidden', $('#hunt-target').value === 'system'));
$('#hunt-start').addEventListener('click', async () => {
  $('#hunt-error').textContent = '';
  const target = {};
  const tv = $('#hunt-target-value').value.trim();
  if ($('#hunt-target').value === 'pids') target.pids = tv.split(/[\s,]+/).filter(Boolean).map(Number);
  if ($('#hunt-target').value === 'cgroup') target.cgroup = tv;
  try {
    await api('/api/hunts', { body: { backend: $('#hunt-backend').value, target, duration: $('#hunt-duration').value.trim() || '0s',
      round: $('#hunt-round').value.trim() || '0s', budget_pct: Number($('#hunt-budget').value), threshold_pct: Number($('#hunt-threshold').value), out: $('#hunt-out').value.trim() } });
  } catch (e) {
    $('#hunt-error').textContent = e.message;
  }
});
state.hunts = {};
// A hunt's flame graph and timeline outlive the redraws of its card, so
// that its view, search and zoom stay as the tree grows; treeSizes are the
// tree's node counts as drawn, one per update.
state.trees = {};
state.treeSizes = {};
function huntTree(id, h, card) {
  if (!h.tree) return;
  const tree = h.tree;
  let t = state.trees[id];
  const fresh = !t;
  if (fresh) {
    t = state.trees[id] = { flame: el('div', { class: 'flame-box' }), timeline: el('div', { class: 'timeline-box' }) };
  }
  card.append(el('div', { class: 'muted' }, h.state === 'running'
    ? `calling-context tree after round ${h.rounds.length ? h.rounds[h.rounds.length - 1].round : 0} (exact boxes timed by instruments; pale dashed ~ boxes estimated from stack samples; hatched: withdrawn; red corner: an instrument refused there)`
    : 'calling-context tree of the finished hunt'), t.flame, el('div', { class: 'muted' }, 'decisions by round (hover a mark for why)'), t.timeline);
  if (fresh) t.ctl = AutoprofFlame.mount(t.flame, tree);
  else t.ctl.update(tree);
  AutoprofFlame.timeline(t.timeline, tree);
  (state.treeSizes[id] || (state.treeSizes[id] = [])).push(tree.nodes.length);
  t.flame.dataset.nodes = String(tree.nodes.length);
}
function pctText(v) { return v === null || v < 0 ? '-' : v.toFixed(2) + '%'; }
function share(v) { return v === null ? '?' : (100 * v).toFixed(1); }
function drawHunts() {
  const box = $('#hunts');
  box.replaceChildren();
  for (const id of Object.keys(state.hunts).map(Number).sort((a, b) => b - a)) {
    const h = state.hunts[id];
    const card = el('div', { class: 'exp hunt', id: 'hunt-' + id, 'data-state': h.state });
    // A watched hunt runs in another process (autoprof hunt in a
    // terminal): the page follows it and can stop following, not stop it.
    const about = h.watched ? `watching autoprof ${(h.command || []).join(' ')}, output ${h.out}/`
      : `${h.request.backend || 'best'} backend, ${targetText(h.request.target)}, budget ${h.request.budget_pct || 2}%, output ${h.out}/`;
    const hd = el('div', { class: 'hd' }, el('strong', {}, 'hunt ' + id), el('span', { class: 'state state-' + h.state }, h.state),
      el('span', { class: 'muted' }, about));
    if (h.state === 'running') hd.append(el('button', { class: 'stop', onclick: () => api(`/api/hunts/${id}/stop`, { method: 'POST' }).catch((e) => alert(e.message)) }, h.watched ? 'Stop watching' : 'Stop'));
    card.append(hd);
    if (h.error) card.append(el('div', { class: 'error' }, h.error));
    if (h.rounds.length) {
      const pred = h.rounds.map((r) => r.predicted_pct || 0), meas = h.rounds.map((r) => Math.max(0, r.measured_pct || 0));
      const budget = h.watched ? '' : ' (budget ' + (h.request.budget_pct || 2) + '%)';
      card.append(el('div', { class: 'muted' }, 'overhead per round, predicted and measured, % of all CPUs' + budget + ': '), spark(pred), ' ', spark(meas));
    }
    const t = el('table', { class: 'grid rounds' }, el('thead', {}, el('tr', {}, ...['round', 'elapsed', 'live', 'predicted', 'measured', 'autoprof', 'best candidate (exclusive share, interval)'].map((x) => el('th', {}, x)))));
    const tb = el('tbody');
    for (const r of h.rounds.slice(-12)) {
      const b = r.best[0];
      tb.append(el('tr', {}, el('td', { class: 'num' }, r.round), el('td', { class: 'num' }, r.elapsed_s.toFixed(1) + 's'), el('td', { class: 'num' }, r.live),
        el('td', { class: 'num' }, pctText(r.predicted_pct)), el('td', { class: 'num' }, pctText(r.measured_pct)), el('td', { class: 'num' }, pctText(r.controller_pct)),
        el('td', { class: 'fn' }, b ? `${b.path}  ${share(b.excl.mean)}% [${share(b.excl.low)}, ${share(b.excl.high)}]` : '')));
    }
    t.append(tb);
    card.append(t);
    box.append(card);
    huntTree(id, h, card);
    if (h.files && h.files.length) {
      const links = el('div', { class: 'files' }, 'outputs: ');
      for (const f of h.files) links.append(el('a', { href: `/runs/${encodeURIComponent(h.out)}/${f}`, target: '_blank', class: 'fn' }, f), ' ');
      card.append(links);
    }
  }
}
async function loadRuns() {
  const runs = await api('/api/runs');
  const ul = $('#runs');
  ul.replaceChildren();
  for (const r of runs) {
    const li = el('li', { 'data-run': r.name }, el('strong', {}, r.name), ' ');
    for (const f of r.files) li.append(el('a', { href: `/runs/${encodeURIComponent(r.name)}/${f}`, target: '_blank', class: 'fn' }, f), ' ');
    if (r.files.includes('run.json')) li.append(el('button', { class: 'run-tree', onclick: () => showRunTree(r.name, li).catch((e) => alert(e.message)) }, 'Flame graph'));
    if (r.hunting) {
      // A hunt under way there, started elsewhere: the page can follow it.
      li.append(el('span', { class: 'muted' }, ` hunt under way: autoprof ${r.hunting.command.join(' ')} (pid ${r.hunting.pid}, ${r.hunting.rounds} rounds) `),
        el('button', { class: 'run-watch', onclick: () => api(`/api/runs/${encodeURIComponent(r.name)}/watch`, { method: 'POST' }).catch((e) => alert(e.message)) }, 'Watch'));
    }
    ul.append(li);
  }
  if (!runs.length) ul.append(el('li', { class: 'muted' }, 'no saved run (a directory with run.json) and no hunt under way in the server\'s directory'));
}
// showRunTree draws a saved run's tree and decisions under its line.
async function showRunTree(name, li) {
  const tree = await api(`/api/runs/${encodeURIComponent(name)}/tree`);
  li.querySelector('.run-view')?.remove();
  const flame = el('div', { class: 'flame-box', 'data-nodes': String(tree.nodes.length) }), timeline = el('div', { class: 'timeline-box' });
  li.append(el('div', { class: 'run-view' }, flame, el('div', { class: 'muted' }, 'decisions by round (hover a mark for why)'), timeline));
  AutoprofFlame.mount(flame, tree);
  AutoprofFlame.timeline(timeline, tree);
}
$('#runs-reload').addEventListener('click', () => loadRuns().catch(() => {}));

function listen() {
  const es = new EventSource('/api/events');
  es.addEventListener('experiment', (m) => {
    const x = JSON.parse(m.data);
    state.exps[x.id] = x;
    drawExperiments();
  });
  es.addEventListener('problem', (m) => console.error(JSON.parse(m.data).error));
  es.addEventListener('hunt', (m) => {
    const h = JSON.parse(m.data);
    const was = state.hunts[h.id];
    state.hunts[h.id] = h;
    drawHunts();
    if (was && was.state === 'running' && h.state !== 'running') loadRuns().catch(() => {});
  });
  es.addEventListener('reading', (m) => {
    const r = JSON.parse(m.data);
    state.latest[r.id] = r;
    const per = state.series[r.id] || (state.series[r.id] = {});
    for (const s of r.instruments) (per[s.instrument] || (per[s.instrument] = [])).push(s.calls_per_s || 0);
    drawExperiments();
  });
}

loadCaps().catch((e) => { $('#caps').textContent = e.message; });
loadSymbols();
loadFiles().catch(() => {});
loadRuns().catch(() => {});
drawPlan();
listen();
