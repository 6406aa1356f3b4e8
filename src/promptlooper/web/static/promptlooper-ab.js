/*
 * PromptLooper A/B client: assigns the visitor to online experiments, sets each experiment's
 * cookie, reveals the assigned variant, and reports impressions and events.
 *
 * Usage (no build step):
 *   <style>[data-experiment]{display:none}</style>   <!-- nothing shows until assigned -->
 *   <script src="/static/promptlooper-ab.js" defer></script>
 *   <div data-experiment="homepage_hero_test" data-variant="old" data-control>...</div>
 *   <div data-experiment="homepage_hero_test" data-variant="new">...</div>
 *   <button data-track="cta_click">Go</button>
 *   <form data-track-form>...</form>                   <!-- form_start, form_submit -->
 *   PromptLooperAB.track("conversion", {value: 49});
 *
 * Assignment is GrowthBook's hashing version 2 (FNV-1a 32), the same as the server's
 * /api/experiments/{key}/assignment?unit_id=<visitor id>.
 */
(function () {
  "use strict";

  var script = document.currentScript;
  var API = (script && script.getAttribute("data-api")) || (script ? new URL(script.src).origin : "");
  var SESSION_COOKIE = (script && script.getAttribute("data-session-cookie")) || "pl_sid";
  var COOKIE_DAYS = 90;
  var assignments = {};  // experiment key -> the variant shown
  var arms = {};  // experiment key -> the arm the visitor counts in (its cookie's)
  var ready = false;
  var queue = [];

  function fnv1a32(text) {
    var hash = 0x811c9dc5;
    for (var i = 0; i < text.length; i++) {
      hash ^= text.charCodeAt(i);
      hash = Math.imul(hash, 0x01000193);
    }
    return hash >>> 0;
  }

  function hashUnit(seed, unit) {
    return (fnv1a32(String(fnv1a32(seed + unit))) % 10000) / 10000;
  }

  function bucketRanges(weights, coverage) {
    coverage = Math.min(1, Math.max(0, coverage));
    var total = weights.reduce(function (a, b) { return a + b; }, 0);
    if (total < 0.99 || total > 1.01) {
      weights = weights.map(function () { return 1 / weights.length; });
    }
    var start = 0;
    return weights.map(function (w) {
      var range = [start, start + coverage * w];
      start += w;
      return range;
    });
  }

  // A bandit's weights in force (new visitors only: the cookie keeps a returning visitor's
  // arm), otherwise the allocations.
  function weightsOf(experiment) {
    if (experiment.weights && experiment.weights.length === experiment.variants.length) {
      return experiment.weights;
    }
    return experiment.variants.map(function (v) { return v.allocation / 100; });
  }

  function choose(unit, experiment) {
    var ranges = bucketRanges(weightsOf(experiment), experiment.coverage / 100);
    var n = hashUnit(experiment.hash_seed, unit);
    for (var i = 0; i < ranges.length; i++) {
      if (n >= ranges[i][0] && n < ranges[i][1]) return experiment.variants[i].variant_key;
    }
    return null;
  }

  function routeMatches(path, patterns) {
    if (!patterns || !patterns.length) return true;
    var normalised = path.replace(/\/+$/, "") || "/";
    return patterns.some(function (pattern) {
      if (pattern.slice(-2) === "/*") {
        var prefix = pattern.slice(0, -2).replace(/\/+$/, "");
        return normalised === (prefix || "/") || normalised.indexOf(prefix + "/") === 0;
      }
      return normalised === (pattern.replace(/\/+$/, "") || "/");
    });
  }

  function readCookie(name) {
    var found = document.cookie.split("; ").filter(function (c) {
      return c.indexOf(name + "=") === 0;
    })[0];
    return found ? decodeURIComponent(found.slice(name.length + 1)) : null;
  }

  function writeCookie(name, value) {
    var expires = new Date(Date.now() + COOKIE_DAYS * 864e5).toUTCString();
    document.cookie = name + "=" + encodeURIComponent(value) + "; expires=" + expires +
      "; path=/; SameSite=Lax";
  }

  function randomId() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    return Date.now().toString(36) + Math.random().toString(36).slice(2);
  }

  function visitor() {
    var id = readCookie(SESSION_COOKIE);
    if (!id) {
      id = randomId();
      writeCookie(SESSION_COOKIE, id);
    }
    return id;
  }

  // Sends one event; a network failure is retried once with the same event_id, which the
  // server stores at most once.
  function send(endpoint, body, attempt) {
    return fetch(API + endpoint, {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify(body),
      keepalive: true,
      credentials: "omit"
    }).catch(function () {
      if (!attempt) return send(endpoint, body, 1);
    });
  }

  function eventFor(key, name, extra) {
    extra = extra || {};
    return {
      experiment_key: key,
      variant_key: arms[key],
      session_id: visitor(),
      path: location.pathname,
      event_name: name,
      timestamp: new Date().toISOString(),
      event_id: extra.event_id || randomId(),
      value: extra.value === undefined ? null : extra.value,
      metadata: extra.metadata || null
    };
  }

  // Keeps the chosen variant's elements (un-hiding them) and removes the others.
  function reveal(key, variant) {
    // Mirrored on <html> for styling; a key the page wrote that makes no attribute name is not.
    if (/^[A-Za-z0-9_-]+$/.test(key)) {
      document.documentElement.setAttribute("data-exp-" + key, variant);
    }
    var nodes = document.querySelectorAll('[data-experiment="' + CSS.escape(key) + '"]');
    Array.prototype.forEach.call(nodes, function (node) {
      if (node.getAttribute("data-variant") === variant) {
        node.removeAttribute("data-experiment");
        node.setAttribute("data-experiment-shown", key);
      } else {
        node.remove();
      }
    });
  }

  // An experiment's control: the arm the registry marks is_control.
  function controlOf(experiment) {
    return experiment.variants.filter(function (v) { return v.is_control; })[0].variant_key;
  }

  // The control as the page marks it, for an experiment the registry does not list (archived,
  // or the registry unreadable: server down, page origin not in CORS_ORIGINS): the element
  // with data-control, else the one whose data-variant is "control", else the first.
  function markedControl(nodes) {
    var marked = Array.prototype.filter.call(nodes, function (node) {
      return node.hasAttribute("data-control");
    })[0] || Array.prototype.filter.call(nodes, function (node) {
      return node.getAttribute("data-variant") === "control";
    })[0] || nodes[0];
    return marked.getAttribute("data-variant");
  }

  // Visitors outside an experiment (route, coverage, a switched-off or archived experiment,
  // no registry) see its control.
  function revealControls(experiments) {
    var controls = {};
    experiments.forEach(function (e) { controls[e.experiment_key] = controlOf(e); });
    var nodes = document.querySelectorAll("[data-experiment]");
    var keys = {};
    Array.prototype.forEach.call(nodes, function (node) {
      keys[node.getAttribute("data-experiment")] = true;
    });
    Object.keys(keys).forEach(function (key) {
      if (assignments[key]) return;
      reveal(key, controls[key] ||
        markedControl(document.querySelectorAll('[data-experiment="' + CSS.escape(key) + '"]')));
    });
  }

  function assign(experiments) {
    var unit = visitor();
    experiments.forEach(function (experiment) {
      if (!experiment.enabled || experiment.status !== "running") return;
      if (!routeMatches(location.pathname, experiment.eligible_routes)) return;
      var keys = experiment.variants.map(function (v) { return v.variant_key; });
      var variant = readCookie(experiment.cookie_name);
      if (keys.indexOf(variant) < 0) variant = choose(unit, experiment);
      if (!variant) return;
      writeCookie(experiment.cookie_name, variant);
      arms[experiment.experiment_key] = variant;
      // The cookie keeps the arm; while a guardrail has stopped it, the control is served,
      // and events still name the arm, where the results count the visitor (intent to treat).
      if ((experiment.stopped_arms || []).indexOf(variant) >= 0) variant = controlOf(experiment);
      assignments[experiment.experiment_key] = variant;
      reveal(experiment.experiment_key, variant);
      // One impression per visitor and experiment: the id makes repeats no-ops.
      send("/api/experiments/impression", eventFor(experiment.experiment_key, "impression", {
        event_id: "imp:" + experiment.experiment_key + ":" + unit
      }));
    });
  }

  // Reports ``name`` for every experiment this page is in (or only ``options.experiment``).
  function track(name, options) {
    options = options || {};
    if (!ready) {
      queue.push([name, options]);
      return;
    }
    Object.keys(assignments).forEach(function (key) {
      if (options.experiment && options.experiment !== key) return;
      send("/api/experiments/event", eventFor(key, name, options));
    });
  }

  function bindPage() {
    document.addEventListener("click", function (e) {
      var target = e.target.closest && e.target.closest("[data-track]");
      if (!target) return;
      var value = target.getAttribute("data-value");
      track(target.getAttribute("data-track"), {value: value === null ? undefined : Number(value)});
    });
    document.addEventListener("focusin", function (e) {
      var form = e.target.closest && e.target.closest("form[data-track-form]");
      if (form && !form.hasAttribute("data-started")) {
        form.setAttribute("data-started", "");
        track("form_start");
      }
    });
    document.addEventListener("submit", function (e) {
      if (e.target.matches && e.target.matches("form[data-track-form]")) track("form_submit");
    });
  }

  function start() {
    bindPage();
    return fetch(API + "/api/experiments", {credentials: "omit"})
      .then(function (r) { return r.ok ? r.json() : []; })
      .catch(function () { return []; })
      .then(function (experiments) {
        assign(experiments);
        revealControls(experiments);
        ready = true;
        queue.splice(0).forEach(function (item) { track(item[0], item[1]); });
        document.dispatchEvent(new CustomEvent("promptlooper:assigned", {detail: assignments}));
      });
  }

  window.PromptLooperAB = {
    assignments: assignments,
    track: track,
    hashUnit: hashUnit,
    visitorId: visitor,
    ready: document.readyState === "loading"
      ? new Promise(function (resolve) {
          document.addEventListener("DOMContentLoaded", function () { start().then(resolve); });
        })
      : start()
  };
})();
