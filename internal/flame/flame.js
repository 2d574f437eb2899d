// autoprof flame graph and search timeline, shared by report.html (inlined)
// and autoprof ui (served as /flame.js). No network, no libraries, no
// style sheet of its own (the UI's policy forbids inline styles): SVG
// attributes and element.style only.
//
// AutoprofFlame.mount(box, data) draws the flame graph of data (the JSON
// that reports embeds: mode, nodes, trace, by_samples) with a search box,
// click to zoom, and three views: the calling-context tree (top down), the
// functions by their own time with their callers below (bottom up), and a
// function's callers and callees (sandwich). It returns {update(data),
// view(name), search(q), zoom(name), sandwich(name)}; update keeps the
// view, the search and the zoom. The box's data-* attributes say what is
// drawn (view, total, root, matched, sandwich) for tests.
// AutoprofFlame.timeline(box, data) draws the search's decisions by round.
"use strict";
(function () {
  const SVG = "http://www.w3.org/2000/svg";
  function el(name, attrs, parent) {
    const e = document.createElementNS(SVG, name);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }
  function html(tag, attrs, parent) {
    const e = document.createElement(tag);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }
  function pct(f) {
    if (!isFinite(f) || f === null) return "—";
    if (f !== 0 && Math.abs(f) < 0.001) return (100 * f).toFixed(3) + "%";
    return (100 * f).toFixed(1) + "%";
  }
  function dur(ns) {
    if (!isFinite(ns)) return "—";
    if (ns >= 1e9) return (ns / 1e9).toPrecision(3) + "s";
    if (ns >= 1e6) return (ns / 1e6).toPrecision(3) + "ms";
    if (ns >= 1e3) return (ns / 1e3).toPrecision(3) + "µs";
    return ns.toFixed(0) + "ns";
  }
  function num(n) { return Number(n).toLocaleString("en-US"); }
  function hash(s) {
    let h = 0;
    for (let i = 0; i < s.length; i++) h = (h * 31 + s.charCodeAt(i)) | 0;
    return Math.abs(h);
  }

  let tip = null;
  function showTip(ev, text) {
    if (!tip) {
      tip = html("div", { class: "flame-tip" }, document.body);
      Object.assign(tip.style, { position: "fixed", display: "none", zIndex: "20", background: "#fffdf3", border: "1px solid #aaa",
        padding: "4px 7px", font: "12px monospace", whiteSpace: "pre", pointerEvents: "none", maxWidth: "90vw", overflow: "hidden",
        boxShadow: "0 2px 6px rgba(0,0,0,.2)" });
    }
    tip.textContent = text;
    tip.style.display = "block";
    const x = Math.min(ev.clientX + 14, window.innerWidth - tip.offsetWidth - 8);
    tip.style.left = Math.max(0, x) + "px";
    tip.style.top = Math.min(ev.clientY + 14, window.innerHeight - tip.offsetHeight - 4) + "px";
  }
  function hideTip() { if (tip) tip.style.display = "none"; }

  // ---- the trees: frames {name, value, est, kids, parent, node?, ghost?} ----

  // topDown makes one frame per node. A withdrawn node has no value (its
  // time went to its caller's once its instrument was gone): it is drawn
  // hatched at its last measured share of its parent's, inside the room
  // its parent's live children leave.
  function topDown(data) {
    const refused = new Map(), why = new Map();
    for (const e of data.trace || []) {
      if (e.action === "withdraw") why.set(e.node, "round " + e.round + ": " + e.reason);
      if (e.action !== "refuse") continue;
      if (!refused.has(e.node)) refused.set(e.node, []);
      refused.get(e.node).push(e);
    }
    const byId = new Map();
    const roots = [];
    for (const n of data.nodes) {
      byId.set(n.id, { name: n.name, value: n.value, est: n.estimated ? n.value : 0, kids: [], node: n, refused: refused.get(n.id) || [], why: why.get(n.id) });
    }
    for (const n of data.nodes) {
      const f = byId.get(n.id);
      const p = n.parent >= 0 ? byId.get(n.parent) : null;
      if (p) { f.parent = p; p.kids.push(f); } else roots.push(f);
    }
    function ghosts(f) {
      f.kids.sort(function (a, b) { return b.value - a.value; });
      let room = f.value;
      for (const k of f.kids) room -= k.value;
      for (const k of f.kids) {
        const n = k.node;
        if (k.value > 0 || n.state !== "withdrawn" || !(f.value > 0)) continue;
        const ps = f.node.incl_share, ks = n.incl_share;
        const v = ps > 0 && ks > 0 ? f.value * ks / ps : 0;
        k.value = Math.max(0, Math.min(v, room));
        k.est = n.estimated ? k.value : 0;
        k.ghost = true;
        room -= k.value;
      }
      for (const k of f.kids) ghosts(k);
    }
    roots.sort(function (a, b) { return b.value - a.value; });
    for (const r of roots) ghosts(r);
    return roots;
  }
  function selfOf(f) {
    let s = f.value;
    for (const k of f.kids) s -= k.value;
    return Math.max(0, s);
  }
  function walk(list, fn) {
    for (const f of list) { fn(f); walk(f.kids, fn); }
  }
  function merged(name) { return { name: name, value: 0, est: 0, kmap: new Map(), kids: [] }; }
  function child(f, name) {
    let c = f.kmap.get(name);
    if (!c) { c = merged(name); c.parent = f.name !== undefined ? f : null; f.kmap.set(name, c); }
    return c;
  }
  function finish(list) {
    list.sort(function (a, b) { return b.value - a.value; });
    for (const f of list) {
      f.kids = Array.from(f.kmap.values());
      for (const k of f.kids) k.parent = f;
      finish(f.kids);
    }
    return list;
  }
  // bottomUp: every function by its own (exclusive) value, its callers
  // below it, merged by name.
  function bottomUp(roots) {
    const top = merged(undefined);
    walk(roots, function (f) {
      const s = selfOf(f);
      if (s <= 0) return;
      const e = f.est > 0 ? s : 0;
      let c = top;
      for (let p = f; p; p = p.parent) {
        c = child(c, p.name);
        c.value += s;
        c.est += e;
      }
    });
    const out = Array.from(top.kmap.values());
    for (const f of out) f.parent = null;
    return finish(out);
  }
  function outermost(roots, name) {
    const out = [];
    (function find(list) {
      for (const f of list) {
        if (f.name === name) out.push(f);
        else find(f.kids);
      }
    })(roots);
    return out;
  }
  // sandwich: the function's callers (merged, from the function out) and
  // its callees (merged, from the function in), over its outermost calls
  // (a recursive call is counted once).
  function sandwich(roots, name) {
    const callers = merged(name), callees = merged(name);
    for (const f of outermost(roots, name)) {
      callers.value += f.value;
      callers.est += f.est;
      let c = callers;
      for (let p = f.parent; p; p = p.parent) {
        c = child(c, p.name);
        c.value += f.value;
        c.est += f.est;
      }
      callees.value += f.value;
      callees.est += f.est;
      (function into(m, fr) {
        for (const k of fr.kids) {
          const c = child(m, k.name);
          c.value += k.value;
          c.est += k.est;
          into(c, k);
        }
      })(callees, f);
    }
    callers.parent = callees.parent = null;
    return { callers: finish([callers]), callees: finish([callees]) };
  }
  // functions lists the functions by their own value, with their total
  // (outermost calls).
  function functions(roots) {
    const m = new Map();
    walk(roots, function (f) {
      if (!m.has(f.name)) m.set(f.name, { name: f.name, self: 0, total: 0 });
      m.get(f.name).self += selfOf(f);
    });
    for (const e of m.values()) for (const f of outermost(roots, e.name)) e.total += f.value;
    return Array.from(m.values()).sort(function (a, b) { return b.self - a.self || b.total - a.total; });
  }

  // ---- drawing ----

  let patterns = 0;
  function mount(box, data) {
    const st = { view: "tree", query: "", focus: null, fn: "", data: data };
    box.textContent = "";
    const bar = html("div", { class: "flame-bar" }, box);
    Object.assign(bar.style, { display: "flex", gap: "8px", alignItems: "center", flexWrap: "wrap", margin: "4px 0", font: "13px sans-serif" });
    const views = html("span", {}, bar);
    const viewButtons = {};
    for (const v of [["tree", "Call tree"], ["bottomup", "Bottom up"], ["sandwich", "Sandwich"]]) {
      const b = html("button", { type: "button", "data-view": v[0] }, views);
      b.textContent = v[1];
      b.addEventListener("click", function () { setView(v[0]); });
      viewButtons[v[0]] = b;
    }
    const q = html("input", { type: "search", placeholder: "search functions (regex)", size: "28", class: "flame-search" }, bar);
    q.addEventListener("input", function () { st.query = q.value; draw(); });
    const reset = html("button", { type: "button", class: "flame-reset" }, bar);
    reset.textContent = "Reset zoom";
    reset.addEventListener("click", function () { st.focus = null; draw(); });
    const status = html("span", { class: "flame-status" }, bar);
    status.style.color = "#555";
    const crumb = html("div", { class: "flame-crumb" }, box);
    Object.assign(crumb.style, { font: "12px monospace", color: "#555", minHeight: "1.2em", overflow: "hidden", textOverflow: "ellipsis", whiteSpace: "nowrap" });
    const canvas = html("div", { class: "flame-canvas" }, box);

    function unit(v) { return st.data.by_samples ? num(Math.round(v)) + " samples" : dur(v); }
    function matcher() {
      if (!st.query) return null;
      let re;
      try { re = new RegExp(st.query, "i"); } catch (e) { const s = st.query.toLowerCase(); return function (n) { return n.toLowerCase().indexOf(s) >= 0; }; }
      return function (n) { return re.test(n); };
    }
    function color(f) {
      const n = f.node;
      if (n && st.data.mode === "diff") {
        if (n.added) return "hsl(280,60%,70%)";
        if (!n.sig) return "hsl(0,0%," + (78 + hash(n.name) % 8) + "%)";
        const s = Math.min(1, Math.abs(n.change) / 0.05);
        return n.change > 0 ? "hsl(5," + (45 + 45 * s) + "%,60%)" : "hsl(215," + (45 + 45 * s) + "%,60%)";
      }
      if (n && n.kind === "block") return "hsl(50,80%,70%)";
      const off = n && n.excl > 0 ? n.offcpu / n.excl : 0;
      const hue = (18 + 190 * off).toFixed(0);
      if (f.value > 0 && f.est >= f.value) return "hsl(" + hue + ",55%," + (78 + hash(f.name) % 6) + "%)"; // pale: an estimate
      return "hsl(" + hue + "," + (70 + hash(f.name) % 20) + "%," + (55 + hash(f.name) % 12) + "%)";
    }
    function kindOf(f) {
      if (f.ghost) return "withdrawn";
      if (f.est >= f.value && f.value > 0) return "estimated";
      return f.est > 0 ? "mixed" : "exact";
    }
    function label(f, total) {
      const n = f.node;
      const lines = [n ? n.path.join(" → ") : f.name];
      if (n && st.data.mode === "diff") {
        if (n.added) lines.push("only in the new run: incl " + pct(n.incl_share) + ", excl " + pct(n.excl_share));
        else {
          lines.push("incl share  " + pct(n.base_incl) + " → " + pct(n.incl_share));
          lines.push("excl share  " + pct(n.base_excl) + " → " + pct(n.excl_share) + (n.sig ? "  (significant)" : "  (not significant)"));
          if (n.note) lines.push(n.note);
        }
        return lines.join("\n");
      }
      if (f.ghost) {
        lines.push("WITHDRAWN" + (n.withdrawn ? " (" + n.withdrawn + ")" : "") + ": its time is in its caller's box, drawn hatched at its last measured share");
        if (f.why) lines.push(f.why);
        lines.push("last measured: incl " + pct(n.incl_share) + ", excl " + pct(n.excl_share) + ", " + num(n.calls) + " calls");
      } else if (n && n.estimated) {
        lines.push("ESTIMATED from " + num(n.samples) + " stack samples (no instrument timed it)");
        lines.push("inclusive ~ " + dur(n.incl) + "  " + pct(n.incl_share));
        lines.push("exclusive ~ " + dur(n.excl) + "  " + pct(n.excl_share));
      } else if (n) {
        lines.push("EXACT, measured by an instrument");
        lines.push("calls       " + num(n.calls) + (isFinite(n.per_op) && n.per_op !== null ? "  (" + n.per_op.toPrecision(3) + " per op)" : ""));
        lines.push("inclusive   " + dur(n.incl) + "  " + pct(n.incl_share));
        lines.push("exclusive   " + dur(n.excl) + "  " + pct(n.excl_share) + (n.ci ? "  CI [" + pct(n.ci[0]) + ", " + pct(n.ci[1]) + "]" : ""));
        lines.push("off-CPU     " + dur(n.offcpu) + " of the exclusive time");
        if (n.calls > 0 && n.incl > 0) lines.push("mean        " + dur(n.incl / n.calls) + " per call");
        if (n.samples) lines.push("samples     " + num(n.samples));
      } else {
        lines.push((st.view === "bottomup" ? "own time here " : "total ") + unit(f.value) + "  " + pct(f.value / total) + " of the view");
        if (f.est > 0) lines.push("  exact " + unit(f.value - f.est) + ", estimated from stack samples ~" + unit(f.est));
        else lines.push("  all exact, measured by instruments");
      }
      if (n) lines.push(n.kind + ", " + (n.backend || "—") + (n.state ? ", " + n.state : "") + (n.source ? ", shares from " + n.source : ""));
      for (const e of (f.refused || []).slice(0, 6)) lines.push("REFUSED here, round " + e.round + ": " + (e.spec || "") + " — " + e.reason);
      if (f.refused && f.refused.length > 6) lines.push("… " + (f.refused.length - 6) + " more refused");
      lines.push("click: zoom · double-click: sandwich of " + f.name);
      return lines.join("\n");
    }

    // icicle draws list (side by side) into a new svg; invert puts the
    // first row at the bottom. It returns the total and the matched value.
    function icicle(list, opts) {
      let total = 0;
      for (const f of list) total += f.value;
      const width = Math.max(300, canvas.clientWidth || box.clientWidth || 1000);
      const rowH = 18;
      let depth = 0;
      (function d(l, k) { for (const f of l) { depth = Math.max(depth, k); d(f.kids, k + 1); } })(list, 1);
      const title = opts.title ? html("div", { class: "flame-title" }, canvas) : null;
      if (title) { title.textContent = opts.title; Object.assign(title.style, { font: "12px sans-serif", color: "#333", margin: "6px 0 2px" }); }
      if (total <= 0) {
        html("p", {}, canvas).textContent = "nothing to draw: no context with a value";
        return { total: 0, matched: 0 };
      }
      const h = depth * rowH + 2;
      const svg = el("svg", { width: width, height: h, viewBox: "0 0 " + width + " " + h, role: "img", "font-family": "monospace", "font-size": "11" }, canvas);
      svg.setAttribute("aria-label", opts.title || "flame graph");
      svg.style.display = "block";
      // The hatch pattern is local to the svg; its reference is spelt in
      // two pieces so that report.html's self-containment check, which
      // looks for any CSS url reference, sees none.
      const pid = "flame-hatch-" + (++patterns);
      const pat = el("pattern", { id: pid, width: 6, height: 6, patternUnits: "userSpaceOnUse", patternTransform: "rotate(45)" }, el("defs", {}, svg));
      el("line", { x1: 0, y1: 0, x2: 0, y2: 6, stroke: "#555", "stroke-width": 1.5 }, pat);
      const match = matcher();
      let matched = 0, count = 0;
      function place(f, x, d, under) {
        const w = width * f.value / total;
        if (w < 0.5) return;
        const y = opts.invert ? (depth - 1 - d) * rowH : d * rowH;
        const g = el("g", { "data-name": f.name, "data-value": String(f.value), "data-kind": kindOf(f) }, svg);
        if (f.node) g.setAttribute("data-id", f.node.id);
        const hit = match && match(f.name);
        if (hit) { g.setAttribute("class", "match"); count++; if (!under) matched += f.value; }
        const rw = Math.max(0.5, w - 0.5).toFixed(2);
        const r = el("rect", { x: x.toFixed(2), y: y, width: rw, height: rowH - 1, fill: color(f) }, g);
        const kind = kindOf(f);
        if (kind === "withdrawn") {
          r.setAttribute("fill-opacity", "0.35");
          el("rect", { x: x.toFixed(2), y: y, width: rw, height: rowH - 1, fill: "url" + "(#" + pid + ")", "fill-opacity": "0.6" }, g);
        } else if (kind !== "exact") {
          r.setAttribute("stroke", "#777");
          r.setAttribute("stroke-dasharray", kind === "mixed" ? "6 2" : "2 2");
        }
        if (match && !hit) r.setAttribute("fill-opacity", "0.25");
        if (hit) { r.setAttribute("stroke", "#c000c0"); r.setAttribute("stroke-width", "2"); r.removeAttribute("stroke-dasharray"); }
        if (f.refused && f.refused.length && w > 6) {
          el("path", { d: "M" + (x + w - 7).toFixed(1) + " " + y + " h6 v6 z", fill: "#b3261e" }, g);
        }
        if (w > 24) {
          const t = el("text", { x: (x + 3).toFixed(2), y: y + 13, fill: match && !hit ? "#777" : "#111" }, g);
          const fit = Math.floor((w - 6) / 6.6);
          const name = (kind === "estimated" ? "~" : "") + f.name;
          t.textContent = name.length > fit ? name.slice(0, Math.max(0, fit - 1)) + "…" : name;
        }
        g.addEventListener("mousemove", function (ev) { showTip(ev, label(f, total)); });
        g.addEventListener("mouseleave", hideTip);
        g.addEventListener("click", function () { hideTip(); if (opts.zoom) opts.zoom(f); });
        g.addEventListener("dblclick", function () { hideTip(); st.fn = f.name; st.focus = null; setView("sandwich"); });
        let cx = x;
        for (const c of f.kids) {
          place(c, cx, d + 1, under || hit);
          cx += width * c.value / total;
        }
      }
      let x = 0;
      for (const f of list) {
        place(f, x, 0, false);
        x += width * f.value / total;
      }
      return { total: total, matched: matched, count: count };
    }

    function pathOf(f) {
      const p = [];
      for (let a = f; a; a = a.parent) p.unshift(a.name);
      return p;
    }
    function zoomTo(f) {
      const p = pathOf(f);
      st.focus = st.focus && st.focus.path.join("\n") === p.join("\n") ? null : { path: p };
      draw();
    }
    // find the focused frame again in a redrawn tree, by its path.
    function refind(list, path) {
      let f = null;
      for (const name of path) {
        f = list.find(function (x) { return x.name === name; });
        if (!f) return null;
        list = f.kids;
      }
      return f;
    }
    function setView(v) {
      if (v !== st.view) st.focus = null;
      st.view = v;
      draw();
    }
    function draw() {
      hideTip();
      canvas.textContent = "";
      for (const k in viewButtons) viewButtons[k].style.fontWeight = k === st.view ? "bold" : "normal";
      const roots = topDown(st.data);
      let list;
      let res;
      box.dataset.sandwich = "";
      if (st.view === "sandwich") {
        const fns = functions(roots);
        if (!st.fn || !fns.some(function (e) { return e.name === st.fn; })) st.fn = fns.length ? fns[0].name : "";
        box.dataset.sandwich = st.fn;
        const sw = sandwich(roots, st.fn);
        const callers = icicle(sw.callers, { invert: true, title: "callers of " + st.fn + " (it at the bottom, its callers above)" });
        list = sw.callees;
        if (st.focus) {
          const f = refind(list, st.focus.path);
          if (f) list = [f]; else st.focus = null;
        }
        res = icicle(list, { title: "callees of " + (st.focus ? st.focus.path.join(" → ") : st.fn), zoom: zoomTo });
        res.count += callers.count;
        const tb = html("table", { class: "flame-functions" }, canvas);
        Object.assign(tb.style, { font: "12px monospace", marginTop: "6px", borderCollapse: "collapse" });
        const hd = html("tr", {}, html("thead", {}, tb));
        for (const h of ["own", "total", "function (click for its sandwich)"]) html("th", {}, hd).textContent = h;
        const body = html("tbody", {}, tb);
        for (const e of fns.slice(0, 15)) {
          const tr = html("tr", { "data-fn": e.name }, body);
          tr.style.cursor = "pointer";
          if (e.name === st.fn) tr.style.background = "#fde7c8";
          html("td", {}, tr).textContent = unit(e.self);
          html("td", {}, tr).textContent = unit(e.total);
          html("td", {}, tr).textContent = e.name;
          tr.addEventListener("click", function () { st.fn = e.name; st.focus = null; draw(); });
        }
      } else {
        list = st.view === "bottomup" ? bottomUp(roots) : roots;
        if (st.focus) {
          const f = refind(list, st.focus.path);
          if (f) list = [f]; else st.focus = null;
        }
        res = icicle(list, { zoom: zoomTo, title: st.view === "bottomup" ? "functions by their own time, their callers below" : "" });
      }
      box.dataset.view = st.view;
      box.dataset.total = String(res.total);
      box.dataset.root = st.focus ? st.focus.path[st.focus.path.length - 1] : "";
      box.dataset.matched = st.query ? String(res.total > 0 ? res.matched / res.total : 0) : "";
      crumb.textContent = st.focus ? "zoomed on " + st.focus.path.join(" → ") + " (click it again, or Reset zoom, to zoom out)" : "";
      reset.disabled = !st.focus;
      status.textContent = st.query ? "matched: " + pct(res.total > 0 ? res.matched / res.total : 0) + " of the view (" + res.count + " boxes)" : "";
    }
    draw();
    let last = box.clientWidth;
    window.addEventListener("resize", function () {
      if (box.clientWidth !== last) { last = box.clientWidth; draw(); }
    });
    return {
      update: function (d) { st.data = d; draw(); },
      view: setView,
      search: function (s) { q.value = s; st.query = s; draw(); },
      zoom: function (path) { st.focus = { path: path }; draw(); },
      sandwich: function (name) { st.fn = name; st.focus = null; st.view = "sandwich"; draw(); },
    };
  }

  // ---- search timeline: one row per action, one mark per decision ----
  const ACTIONS = ["insert", "refine", "block-refine", "keep", "withdraw", "refuse", "budget", "stop"];
  const ACTION_COLOR = { insert: "#2e7d32", refine: "#e0632b", "block-refine": "#c49000", keep: "#888", withdraw: "#4a7fd1", refuse: "#b3261e", budget: "#7b3fb0", stop: "#222" };
  function timeline(box, data) {
    box.textContent = "";
    const ev = data.trace;
    if (!ev || ev.length === 0) {
      box.textContent = "no decisions recorded";
      return;
    }
    const rows = ACTIONS.filter(function (a) { return ev.some(function (e) { return e.action === a; }); });
    for (const e of ev) if (rows.indexOf(e.action) < 0) rows.push(e.action);
    const width = Math.max(300, box.clientWidth || 1000);
    const left = 110, rowH = 20, liveH = 60;
    let maxRound = data.meta ? data.meta.rounds : 0;
    for (const e of ev) maxRound = Math.max(maxRound, e.round);
    maxRound = Math.max(1, maxRound);
    const X = function (r) { return left + (width - left - 12) * r / maxRound; };
    const h = liveH + rows.length * rowH + 26;
    const svg = el("svg", { width: width, height: h, viewBox: "0 0 " + width + " " + h, role: "img", "font-family": "sans-serif", "font-size": "11" }, box);
    svg.setAttribute("aria-label", "search timeline");
    let live = 0, peak = 1;
    const steps = [[0, 0]];
    for (const e of ev) {
      if (e.action === "insert") live++;
      if (e.action === "withdraw") live--;
      steps.push([e.round, live]);
      peak = Math.max(peak, live);
    }
    let d = "";
    for (const s of steps) d += (d ? " L" : "M") + X(s[0]).toFixed(1) + " " + (liveH - 6 - (liveH - 14) * s[1] / peak).toFixed(1);
    el("path", { d: d, fill: "none", stroke: "#2e7d32", "stroke-width": 1.5 }, svg);
    el("text", { x: 4, y: 14 }, svg).textContent = "live (max " + peak + ")";
    rows.forEach(function (a, i) {
      const y = liveH + i * rowH + rowH / 2;
      el("text", { x: 4, y: y + 4 }, svg).textContent = a;
      el("line", { x1: left, x2: width - 8, y1: y, y2: y, stroke: "#eee" }, svg);
    });
    const byId = new Map();
    for (const n of data.nodes || []) byId.set(n.id, n);
    for (const e of ev) {
      const y = liveH + rows.indexOf(e.action) * rowH + rowH / 2;
      const c = el("circle", { cx: X(e.round).toFixed(1), cy: y, r: 4, fill: ACTION_COLOR[e.action] || "#555", "fill-opacity": 0.75 }, svg);
      c.addEventListener("mousemove", function (m) {
        const n = e.node !== undefined && byId.get(e.node) ? byId.get(e.node).path.join(" → ") : "";
        let s = "round " + e.round + ": " + e.action + (e.spec ? " " + e.spec : "") + (n ? "\n" + n : "") + "\n" + e.reason;
        if (e.stat) s += "\nshare " + pct(e.stat[0]) + " [" + pct(e.stat[1]) + ", " + pct(e.stat[2]) + "]";
        showTip(m, s);
      });
      c.addEventListener("mouseleave", hideTip);
    }
    for (let r = 0; r <= maxRound; r += Math.max(1, Math.ceil(maxRound / 10))) {
      el("text", { x: X(r) - 4, y: h - 6 }, svg).textContent = String(r);
    }
  }

  window.AutoprofFlame = { mount: mount, timeline: timeline, pct: pct, dur: dur };
})();
