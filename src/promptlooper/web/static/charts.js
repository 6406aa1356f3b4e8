// Line charts drawn with uPlot from JSON written by the server. Markup contract (see the
// `chart` macro in templates/macros.html):
//   <figure class="chart-box" data-chart="ID" data-height="240">
//     <script type="application/json" id="ID">{...}</script>
//   </figure>
// where the JSON is
//   {"x": [..], "time": false, "xlabel": "step", "ylabel": "loss", "log": false,
//    "series": [{"label": "loss", "values": [..], "color": "accent|good|bad|warn|muted",
//                "smooth": true}]}
// A null value is a gap. With "time": true, x is in Unix seconds; x values that are all whole
// numbers (steps) get whole-number ticks. A single x (one day, one step) is drawn in the middle
// of a span of a day (time) or a step either side: uPlot's own range for one value is a share
// of the value, years around a Unix time. An
// <input type="range" name="smooth" min="0" max="0.99" step="0.01" data-smooth-for="ID ID2">
// on the page sets the exponential smoothing of the series marked "smooth" in the charts it
// names (the raw line stays, faded), as TensorBoard does; its value is shown in an
// <output data-smooth-value> beside it and kept in the page's URL (and in the links and forms
// marked data-keeps-smooth), so a reload shows the same curves. Charts inside content that htmx
// swaps in are drawn again after the swap.
(function () {
  "use strict";

  function cssColour(name) {
    var value = getComputedStyle(document.documentElement).getPropertyValue("--" + (name || "accent"));
    return value.trim() || "#2f5fb3";
  }

  // Debiased exponential moving average; gaps stay gaps.
  function smooth(values, weight) {
    if (!weight) return values;
    var out = [], last = 0, count = 0;
    for (var i = 0; i < values.length; i++) {
      var v = values[i];
      if (v === null || v === undefined || !isFinite(v)) { out.push(null); continue; }
      last = last * weight + (1 - weight) * v;
      count++;
      out.push(last / (1 - Math.pow(weight, count)));
    }
    return out;
  }

  function smoothingFor(id) {
    var slider = document.querySelector('input[data-smooth-for~="' + id + '"]');
    return slider ? Number(slider.value) || 0 : 0;
  }

  // Tick steps of 1, 2, 5, 10, 20, 50, ...: a step axis never reads 2.5.
  var WHOLE_INCRS = [];
  for (var m = 1; m <= 1e12; m *= 10) WHOLE_INCRS.push(m, 2 * m, 5 * m);

  function wholeNumbers(values) {
    return values.every(function (v) { return Number.isInteger(v); });
  }

  // The smoothing into the URL, its links and forms: ?smooth=0.6, or nothing when off.
  function keepSmoothing(name, weight) {
    function withIt(address) {
      var url = new URL(address, window.location.href);
      if (weight) url.searchParams.set(name, String(weight)); else url.searchParams.delete(name);
      return url.pathname + url.search + url.hash;
    }
    window.history.replaceState(window.history.state, "", withIt(window.location.href));
    document.querySelectorAll("[data-keeps-smooth]").forEach(function (element) {
      var attribute = element.tagName === "FORM" ? "action" : "href";
      element.setAttribute(attribute, withIt(element.getAttribute(attribute)));
    });
  }

  function build(spec, weight) {
    var data = [spec.x], series = [{label: spec.xlabel || "x"}];
    spec.series.forEach(function (s) {
      var colour = cssColour(s.color);
      if (s.smooth && weight > 0) {
        data.push(s.values);
        series.push({label: s.label + " (raw)", stroke: colour, alpha: 0.25, width: 1, spanGaps: false});
        data.push(smooth(s.values, weight));
        series.push({label: s.label, stroke: colour, width: 2, spanGaps: false});
      } else {
        data.push(s.values);
        series.push({label: s.label, stroke: colour, width: 2, spanGaps: false,
                     points: {show: spec.x.length <= 60}});
      }
    });
    return {data: data, series: series};
  }

  function xScale(spec) {
    var scale = {time: !!spec.time};
    var low = Math.min.apply(null, spec.x), high = Math.max.apply(null, spec.x);
    if (low === high) {
      var pad = spec.time ? 86400 : 1;
      scale.range = function () { return [low - pad, high + pad]; };
    }
    return scale;
  }

  function draw(figure) {
    var id = figure.getAttribute("data-chart");
    var source = document.getElementById(id);
    if (!source || typeof uPlot === "undefined") return;
    var spec = JSON.parse(source.textContent);
    if (!spec.x || !spec.x.length) return;
    var weight = smoothingFor(id);
    var built = build(spec, weight);
    var axis = {stroke: cssColour("muted"), grid: {stroke: cssColour("line"), width: 1},
                ticks: {stroke: cssColour("line"), width: 1}};
    var options = {
      width: Math.max(figure.clientWidth, 240),
      height: Number(figure.getAttribute("data-height")) || 240,
      series: built.series,
      scales: {x: xScale(spec), y: spec.log ? {distr: 3} : {}},
      axes: [Object.assign({label: spec.xlabel || ""}, axis,
                           !spec.time && wholeNumbers(spec.x) ? {incrs: WHOLE_INCRS} : {}),
             Object.assign({label: spec.ylabel || ""}, axis)],
      legend: {live: true},
      cursor: {drag: {x: true, y: false}},
    };
    if (figure._plot) figure._plot.destroy();
    var holder = figure.querySelector(".chart-canvas");
    if (!holder) {
      holder = document.createElement("div");
      holder.className = "chart-canvas";
      figure.insertBefore(holder, figure.firstChild);
    }
    figure._plot = new uPlot(options, built.data, holder);
  }

  function drawAll(root) {
    (root || document).querySelectorAll("figure[data-chart]").forEach(draw);
  }

  document.addEventListener("DOMContentLoaded", function () { drawAll(document); });
  document.addEventListener("htmx:afterSettle", function (event) { drawAll(event.detail.elt); });
  document.addEventListener("input", function (event) {
    var slider = event.target;
    var ids = slider.getAttribute && slider.getAttribute("data-smooth-for");
    if (!ids) return;
    var weight = Number(slider.value) || 0;
    var shown = slider.parentElement.querySelector("output[data-smooth-value]");
    if (shown) shown.textContent = weight.toFixed(2);
    if (slider.name) keepSmoothing(slider.name, weight);
    ids.split(/\s+/).forEach(function (id) {
      var figure = document.querySelector('figure[data-chart="' + id + '"]');
      if (figure) draw(figure);
    });
  });
  var resizing;
  window.addEventListener("resize", function () {
    clearTimeout(resizing);
    resizing = setTimeout(function () {
      document.querySelectorAll("figure[data-chart]").forEach(function (figure) {
        if (figure._plot) figure._plot.setSize({width: Math.max(figure.clientWidth, 240),
                                                 height: figure._plot.height});
      });
    }, 150);
  });
})();
