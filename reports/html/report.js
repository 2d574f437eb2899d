// autoprof report: draws the flame graph and the search timeline from the
// JSON embedded in the page with the shared script (internal/flame),
// inlined before this one. No network, no libraries.
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
  try {
    const data = JSON.parse(document.getElementById("data").textContent);
    const fb = document.getElementById("flamegraph");
    if (fb) window.flame = AutoprofFlame.mount(fb, data);
    const tb = document.getElementById("timeline");
    if (tb) AutoprofFlame.timeline(tb, data);
    document.documentElement.dataset.rendered = "1";
  } catch (e) {
    fail(String(e && e.stack || e));
  }
})();
