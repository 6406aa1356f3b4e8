// Line charts drawn with uPlot from JSON written by the server. Markup contract (see the
// `chart` macro in templates/macros.html):
//   <figure class="chart-box" data-chart="ID" data-height="240">
//     <script type="application/json" id="ID">{...}</script>
//   </figure>
// where the JSON is
//   {"x": [..], "time": false, "daily": false, "xlabel": "step", "ylabel": "loss", "log": false,
//    "unit": "", "digits": 2, "signed": false, "zero": false,
//    "series": [{"label": "loss", "values": [..], "color": "accent",
//                "style": 0, "smooth": true}]}
// "color" names a colour of ui.css (accent, muted, plum, teal, olive; good, bad, warn where
// the colour means that). A null value is a gap. With "time": true, x is in Unix seconds,
// read in UTC (the server's days are UTC days, whatever the reader's time zone). With
// "daily": true as well, each x is a day (its midnight): the axis spans whole days with each
// point in the middle of its own, its ticks fall on days (never "4am", never a day without
// data around one day of data), and the legend names the date. Other x values that are all
// whole numbers (steps) get whole-number ticks; a single one is drawn in the middle of a step
// either side: uPlot's own range for one value is a share of the value, years around a Unix
// time. "style" (0-4) gives a series its own dash pattern, line width and marker size, the
// widest first: series drawn in order cover each other, so two series with equal values would
// show as one line; with styles, the later, thinner and dashed line runs inside the wider one.
// Without it a series is a plain 2 px line. The legend always lists every series with its
// value, its "unit" and "digits" decimals (signed with "signed"), at the x under the cursor,
// or else the last x. "zero": true keeps 0 on the y scale and draws a line there (a lift's
// reference). Charts are drawn again in the new colours when the system switches between
// light and dark.
// An <input type="range" name="smooth" min="0" max="0.99" step="0.01" data-smooth-for="ID ID2">
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

  // Line styles for series that may coincide: the first is drawn first, widest and with the
  // largest marker, so each later one stays visible on top of it; the legend's marker border
  // repeats the dash.
  var STYLES = [
    {width: 8, dash: [], size: 16, marker: "solid", alpha: 0.45},
    {width: 4, dash: [12, 6], size: 10, marker: "dashed"},
    {width: 2, dash: [3, 3], size: 6, marker: "dotted"},
    {width: 1.5, dash: [12, 4, 2, 4], size: 4, marker: "double"},
    {width: 1, dash: [], size: 3, marker: "solid"},
  ];

  var DAY = 86400;
  var DAY_INCRS = [1, 2, 3, 4, 7, 14, 28, 56, 91, 182, 364, 728].map(function (d) { return d * DAY; });

  function utc(ts) { return uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"); }

  // A legend value with the chart's unit and decimals: "2,500 sessions", "+4.1 %", "—" for a gap.
  function formatter(spec) {
    var digits = spec.digits === undefined ? {maximumFractionDigits: 2}
      : {minimumFractionDigits: spec.digits, maximumFractionDigits: spec.digits};
    var options = Object.assign({signDisplay: spec.signed ? "exceptZero" : "auto"}, digits);
    var unit = spec.unit ? " " + spec.unit : "";
    return function (u, v) {
      return v === null || v === undefined ? "—" : v.toLocaleString(undefined, options) + unit;
    };
  }

  function build(spec, weight) {
    var data = [spec.x], series = [{label: spec.xlabel || "x"}], markers = ["solid"];
    var value = spec.unit || spec.signed ? formatter(spec) : undefined;
    if (spec.daily) {
      var date = uPlot.fmtDate("{YYYY}-{MM}-{DD}");
      series[0].value = function (u, ts) { return ts === null ? "—" : date(utc(ts)); };
    }
    spec.series.forEach(function (s) {
      var colour = cssColour(s.color);
      var style = s.style === undefined ? null : STYLES[s.style % STYLES.length];
      var line = {label: s.label, stroke: colour, width: 2, spanGaps: false};
      if (value) line.value = value;
      if (s.smooth && weight > 0) {
        data.push(s.values);
        series.push(Object.assign({}, line, {label: s.label + " (raw)", alpha: 0.25, width: 1}));
        markers.push("solid");
        data.push(smooth(s.values, weight));
        series.push(line);
      } else {
        data.push(s.values);
        line.points = {show: spec.x.length <= 60};
        if (style) {
          line.width = style.width;
          line.dash = style.dash;
          if (style.alpha) line.alpha = style.alpha;
          Object.assign(line.points, {size: style.size, width: 2, fill: cssColour("bg")});
        }
        series.push(line);
      }
      markers.push(style ? style.marker : "solid");
    });
    return {data: data, series: series, markers: markers};
  }

  function xScale(spec) {
    var scale = {time: !!spec.time};
    var low = Math.min.apply(null, spec.x), high = Math.max.apply(null, spec.x);
    if (spec.daily) {
      // All the days, padded by half a day (uPlot widens a single value by far more before
      // asking); a range dragged to zoom, within the days, stays as dragged.
      scale.range = function (u, min, max) {
        return min <= low && max >= high ? [low - DAY / 2, high + DAY / 2] : [min, max];
      };
    } else if (low === high) {
      var pad = spec.time ? DAY : 1;
      scale.range = function () { return [low - pad, high + pad]; };
    }
    return scale;
  }

  function yScale(spec) {
    if (spec.log) return {distr: 3};
    if (!spec.zero) return {};
    return {range: function (u, low, high) {
      if (low === null || high === null) return [-1, 1];
      return uPlot.rangeNum(Math.min(low, 0), Math.max(high, 0), 0.1, true);
    }};
  }

  // The line at zero, under the series.
  function zeroLine(u) {
    var y = Math.round(u.valToPos(0, "y", true)), ctx = u.ctx;
    ctx.save();
    ctx.strokeStyle = cssColour("muted");
    ctx.lineWidth = uPlot.pxRatio;
    ctx.beginPath();
    ctx.moveTo(u.bbox.left, y);
    ctx.lineTo(u.bbox.left + u.bbox.width, y);
    ctx.stroke();
    ctx.restore();
  }

  // The legend at rest (no cursor over the plot) shows the last x rather than blanks.
  function restLegend(u) {
    if (u.cursor.idx === null || u.cursor.idx === undefined) {
      u.setLegend({idx: u.data[0].length - 1}, false);
    }
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
    var ticks = spec.daily ? {incrs: DAY_INCRS}
      : !spec.time && wholeNumbers(spec.x) ? {incrs: WHOLE_INCRS} : {};
    var options = {
      width: Math.max(figure.clientWidth, 240),
      height: Number(figure.getAttribute("data-height")) || 240,
      series: built.series,
      scales: {x: xScale(spec), y: yScale(spec)},
      axes: [Object.assign({label: spec.xlabel || ""}, axis, ticks),
             Object.assign({label: spec.ylabel || ""}, axis)],
      legend: {live: true, markers: {width: 3, dash: function (u, i) { return built.markers[i]; }}},
      cursor: {drag: {x: true, y: false}},
      hooks: {ready: [restLegend], setCursor: [restLegend],
              drawAxes: spec.zero ? [zeroLine] : []},
    };
    if (spec.time) options.tzDate = utc;
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
  // The colours are read from the page's CSS when drawing: a switch between light and dark
  // while the page is open draws the charts again in the new ones.
  window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", function () {
    drawAll(document);
  });
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
