// The dashboard's one script of its own (the page allows no inline script): it starts the
// vendored mermaid on the journey map and draws the per-day chart with the vendored uPlot
// from the JSON the page carries in <script type="application/json" id="daily-data"> — on
// load, and again each time htmx swaps in the journey page's fresh numbers (#live).
(function () {
  "use strict";

  function drawMap() {
    var map = document.querySelector("#journey-map pre.mermaid:not([data-processed])");
    if (!map || !window.mermaid) return;
    window.mermaid.initialize({
      startOnLoad: false,
      securityLevel: "strict",
      theme: "neutral",
      flowchart: { htmlLabels: true, useMaxWidth: false },
    });
    window.mermaid.run({ nodes: [map] });
  }

  var SERIES = [
    ["entered", "#2456c7"],
    ["converted", "#1d7a46"],
    ["sent", "#7a4fc7"],
    ["opened", "#c77a24"],
    ["clicked", "#b3261e"],
  ];

  function drawChart() {
    var box = document.getElementById("daily-chart");
    var data = document.getElementById("daily-data");
    if (!box || !data || !window.uPlot || box.childElementCount) return;
    var days = JSON.parse(data.textContent || "[]");
    if (!days.length) {
      box.textContent = "No runs in this period.";
      return;
    }
    var columns = [days.map(function (d) { return Date.parse(d.day + "T00:00:00Z") / 1000; })];
    var series = [{}];
    SERIES.forEach(function (pair) {
      columns.push(days.map(function (d) { return d[pair[0]] || 0; }));
      series.push({ label: pair[0], stroke: pair[1], width: 2, points: { show: true } });
    });
    new window.uPlot(
      {
        width: Math.max(box.clientWidth, 320),
        height: 260,
        series: series,
        scales: { x: { time: true } },
        tzDate: function (ts) { return window.uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"); },
        axes: [{}, { label: "per day" }],
      },
      columns,
      box
    );
  }

  document.addEventListener("DOMContentLoaded", function () {
    drawMap();
    drawChart();
  });
  // both draw only what is not drawn yet, so any swap may call them
  ["htmx:after:swap", "htmx:after:settle"].forEach(function (name) {
    document.addEventListener(name, function () {
      drawMap();
      drawChart();
    });
  });
})();
