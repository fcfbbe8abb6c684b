// PromptLedger UI behaviour: loaded as a file (the CSP forbids inline script).
// 1. Drafts: each field with data-draft-key (the template, a chat version's messages, its
//    config and schema, the kind select) keeps its unsaved value in localStorage, so a
//    reload, a crash or a lost tab does not lose an edit. Submitting the form clears it.
// 2. Charts: each .chart[data-chart] is drawn with uPlot from the page's JSON data block.
"use strict";

(function () {
  function storage() {
    try { return window.localStorage; } catch (e) { return null; }
  }

  function initDrafts() {
    var store = storage();
    if (!store) return;
    document.querySelectorAll("textarea[data-draft-key], select[data-draft-key]").forEach(function (area) {
      var key = area.getAttribute("data-draft-key");
      var form = area.form;
      var original = area.tagName === "SELECT" ? area.value : area.defaultValue;
      var notice = form ? form.querySelector("[data-draft-notice]") : null;
      var saved = store.getItem(key);
      if (saved !== null && saved !== area.value) {
        area.value = saved;
        if (notice) notice.hidden = false;
      }
      area.addEventListener(area.tagName === "SELECT" ? "change" : "input", function () {
        if (area.value === original) store.removeItem(key);
        else store.setItem(key, area.value);
      });
      if (form) {
        form.addEventListener("submit", function () { store.removeItem(key); });
      }
      var discard = form ? form.querySelector("[data-draft-discard]") : null;
      if (discard) {
        discard.addEventListener("click", function () {
          store.removeItem(key);
          area.value = original;
          if (notice) notice.hidden = true;
        });
      }
    });
  }

  var CHARTS = {
    runs: [
      { key: "executions", label: "executions", stroke: "#0b5cad" },
      { key: "failed", label: "failed", stroke: "#b42318" }
    ],
    latency: [{ key: "p95_latency_ms", label: "p95 ms", stroke: "#6f42c1", points: true }],
    tokens: [
      { key: "prompt_tokens", label: "prompt", stroke: "#1a7f37" },
      { key: "response_tokens", label: "response", stroke: "#8a5a00" }
    ],
    cost: [{ key: "cost_usd", label: "USD", stroke: "#0f766e", points: true }]
  };

  function initCharts() {
    var source = document.getElementById("chart-data");
    if (!source || typeof window.uPlot === "undefined") return;
    var data = JSON.parse(source.textContent);
    var plots = [];
    document.querySelectorAll(".chart[data-chart]").forEach(function (el) {
      var spec = CHARTS[el.getAttribute("data-chart")];
      if (!spec) return;
      var series = [{}];
      var columns = [data.t];
      spec.forEach(function (s) {
        // p95 is undefined in an hour without executions: no line across it, but a dot for
        // every hour that has one (a lone hour would be invisible as a line)
        series.push({
          label: s.label, stroke: s.stroke, width: 2, spanGaps: false,
          points: s.points ? { show: true, size: 6, fill: s.stroke } : { show: false }
        });
        columns.push(data[s.key]);
      });
      var plot = new window.uPlot(
        { width: Math.max(el.clientWidth, 200), height: 220, series: series, scales: { x: { time: true } } },
        columns,
        el
      );
      el.setAttribute("data-drawn", "true");
      plots.push({ plot: plot, el: el });
    });
    window.addEventListener("resize", function () {
      plots.forEach(function (p) { p.plot.setSize({ width: Math.max(p.el.clientWidth, 200), height: 220 }); });
    });
  }

  // A link to one version (/ui/prompts/NAME#v3) opens that version's collapsed details.
  function openTarget() {
    if (!window.location.hash) return;
    var target = document.getElementById(window.location.hash.slice(1));
    var details = target ? target.querySelector("details") : null;
    if (details) details.open = true;
  }

  function init() {
    initDrafts();
    initCharts();
    openTarget();
    window.addEventListener("hashchange", openTarget);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
