// autoprof report: builds the flame graph and the search timeline from the
// JSON embedded in the page. No network, no libraries.
"use strict";
(function () {
  const errors = [];
  function fail(msg) {
    errors.push(msg);
    document.documentElement.dataset.jsErrors = String(errors.length);
    const box = document.getElementById("errors");
    if (box) box.textContent = "report script error: " + errors.join("; ");
  }
  window.addEventListener("error", function (e) { fail(e.message); });

  const SVG = "http://www.w3.org/2000/svg";
  function el(name, attrs, parent) {
    const e = document.createElementNS(SVG, name);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }
  function pct(f) {
    if (!isFinite(f)) return "—";
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

  const tip = document.createElement("div");
  tip.className = "tooltip";
  document.body.appendChild(tip);
  function showTip(ev, text) {
    tip.textContent = text;
    tip.style.display = "block";
    const x = Math.min(ev.clientX + 14, window.innerWidth - tip.offsetWidth - 8);
    tip.style.left = Math.max(0, x) + "px";
    tip.style.top = (ev.clientY + 14) + "px";
  }
  function hideTip() { tip.style.display = "none"; }

  // ---- flame graph (icicle: roots on top, width = inclusive value) ----
  function flame(data, box) {
    const nodes = data.nodes;
    const kids = new Map();
    const roots = [];
    for (const n of nodes) {
      if (n.parent < 0) roots.push(n);
      else {
        if (!kids.has(n.parent)) kids.set(n.parent, []);
        kids.get(n.parent).push(n);
      }
    }
    for (const list of kids.values()) list.sort(function (a, b) { return b.value - a.value; });
    roots.sort(function (a, b) { return b.value - a.value; });
    const rowH = 18;
    let focus = null;

    function color(n) {
      if (data.mode === "diff") {
        if (n.added) return "hsl(280,60%,70%)";
        if (!n.sig) return "hsl(0,0%," + (78 + hash(n.name) % 8) + "%)";
        const s = Math.min(1, Math.abs(n.change) / 0.05);
        return n.change > 0 ? "hsl(5," + (45 + 45 * s) + "%,60%)" : "hsl(215," + (45 + 45 * s) + "%,60%)";
      }
      if (n.kind === "block") return "hsl(50,80%,70%)";
      const off = n.excl > 0 ? n.offcpu / n.excl : 0;
      const hue = 18 + 190 * off;
      if (n.estimated) return "hsl(" + hue.toFixed(0) + ",60%," + (74 + hash(n.name) % 6) + "%)"; // pale: an estimate
      return "hsl(" + hue.toFixed(0) + "," + (70 + hash(n.name) % 20) + "%," + (55 + hash(n.name) % 12) + "%)";
    }
    function label(n) {
      const lines = [n.path.join(" → ")];
      if (data.mode === "diff") {
        if (n.added) {
          lines.push("only in the new run: incl " + pct(n.incl_share) + ", excl " + pct(n.excl_share));
          return lines.join("\n");
        }
        lines.push("incl share  " + pct(n.base_incl) + " → " + pct(n.incl_share));
        lines.push("excl share  " + pct(n.base_excl) + " → " + pct(n.excl_share) + (n.sig ? "  (significant)" : "  (not significant)"));
        if (n.note) lines.push(n.note);
        return lines.join("\n");
      }
      if (n.estimated) {
        lines.push("estimated from " + num(n.samples) + " stack samples (no instrument timed it)");
        lines.push("inclusive ~ " + dur(n.incl) + "  " + pct(n.incl_share));
        lines.push("exclusive ~ " + dur(n.excl) + "  " + pct(n.excl_share));
        lines.push(n.kind + ", " + (n.backend || "—"));
        return lines.join("\n");
      }
      lines.push("exact, measured by an instrument");
      lines.push("calls       " + num(n.calls) + (isFinite(n.per_op) ? "  (" + n.per_op.toPrecision(3) + " per op)" : ""));
      lines.push("inclusive   " + dur(n.incl) + "  " + pct(n.incl_share));
      lines.push("exclusive   " + dur(n.excl) + "  " + pct(n.excl_share) + (n.ci ? "  CI [" + pct(n.ci[0]) + ", " + pct(n.ci[1]) + "]" : ""));
      lines.push("off-CPU     " + dur(n.offcpu) + " of the exclusive time");
      if (n.calls > 0 && n.incl > 0) lines.push("mean        " + dur(n.incl / n.calls) + " per call");
      if (n.samples) lines.push("samples     " + num(n.samples));
      lines.push(n.kind + ", " + (n.backend || "—"));
      return lines.join("\n");
    }
    function depthOf(list, d) {
      let m = d;
      for (const n of list) m = Math.max(m, depthOf(kids.get(n.id) || [], d + 1));
      return m;
    }
    function draw() {
      box.textContent = "";
      const top = focus ? [focus] : roots;
      let total = 0;
      for (const n of top) total += n.value;
      if (total <= 0) {
        box.textContent = "no timed calling contexts to draw";
        return;
      }
      const width = Math.max(300, box.clientWidth || 1000);
      const depth = depthOf(top, 1);
      const svg = el("svg", { width: width, height: depth * rowH + 2, viewBox: "0 0 " + width + " " + (depth * rowH + 2), role: "img" }, box);
      svg.setAttribute("aria-label", "flame graph");
      function place(n, x, d) {
        const w = width * n.value / total;
        if (w < 0.5) return;
        const g = el("g", { "data-id": n.id }, svg);
        el("rect", { x: x.toFixed(2), y: d * rowH, width: Math.max(0.5, w - 0.5).toFixed(2), height: rowH - 1, fill: color(n) }, g);
        if (w > 30) {
          const t = el("text", { x: (x + 3).toFixed(2), y: d * rowH + 13 }, g);
          const fit = Math.floor((w - 6) / 6.6);
          const name = (n.estimated ? "~" : "") + n.name;
          t.textContent = name.length > fit ? name.slice(0, Math.max(0, fit - 1)) + "…" : name;
        }
        g.addEventListener("mousemove", function (ev) { showTip(ev, label(n)); });
        g.addEventListener("mouseleave", hideTip);
        g.addEventListener("click", function () { focus = focus === n ? null : n; hideTip(); draw(); });
        let cx = x;
        for (const c of kids.get(n.id) || []) {
          place(c, cx, d + 1);
          cx += width * c.value / total;
        }
      }
      let x = 0;
      for (const r of top) {
        place(r, x, 0);
        x += width * r.value / total;
      }
      document.getElementById("flame-focus").textContent = focus ? "zoomed on " + focus.path.join(" → ") + " (click it again to zoom out)" : "";
    }
    draw();
    let last = box.clientWidth;
    window.addEventListener("resize", function () {
      if (box.clientWidth !== last) { last = box.clientWidth; draw(); }
    });
  }

  // ---- search timeline: one row per action, one mark per decision ----
  const ACTIONS = ["insert", "refine", "block-refine", "keep", "withdraw", "refuse", "budget", "stop"];
  const ACTION_COLOR = { insert: "#2e7d32", refine: "#e0632b", "block-refine": "#c49000", keep: "#888", withdraw: "#4a7fd1", refuse: "#b3261e", budget: "#7b3fb0", stop: "#222" };
  function timeline(data, box) {
    const ev = data.trace;
    if (!ev || ev.length === 0) {
      box.textContent = "no decisions recorded";
      return;
    }
    const rows = ACTIONS.filter(function (a) { return ev.some(function (e) { return e.action === a; }); });
    for (const e of ev) if (rows.indexOf(e.action) < 0) rows.push(e.action);
    const width = Math.max(300, box.clientWidth || 1000);
    const left = 110, rowH = 20, liveH = 60;
    let maxRound = data.meta.rounds;
    for (const e of ev) maxRound = Math.max(maxRound, e.round);
    maxRound = Math.max(1, maxRound);
    const X = function (r) { return left + (width - left - 12) * r / maxRound; };
    const h = liveH + rows.length * rowH + 26;
    const svg = el("svg", { width: width, height: h, viewBox: "0 0 " + width + " " + h, role: "img" }, box);
    svg.setAttribute("aria-label", "search timeline");
    // live instruments over rounds, from inserts and withdrawals
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
    for (const e of ev) {
      const y = liveH + rows.indexOf(e.action) * rowH + rowH / 2;
      const c = el("circle", { cx: X(e.round).toFixed(1), cy: y, r: 4, fill: ACTION_COLOR[e.action] || "#555", "fill-opacity": 0.75 }, svg);
      c.addEventListener("mousemove", function (m) {
        const n = e.node !== undefined && data.nodes[e.node] ? data.nodes[e.node].path.join(" → ") : "";
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

  try {
    const data = JSON.parse(document.getElementById("data").textContent);
    const fb = document.getElementById("flamegraph");
    if (fb) flame(data, fb);
    const tb = document.getElementById("timeline");
    if (tb) timeline(data, tb);
    document.documentElement.dataset.rendered = "1";
  } catch (e) {
    fail(String(e && e.stack || e));
  }
})();
