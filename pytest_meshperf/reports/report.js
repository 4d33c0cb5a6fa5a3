// meshperf report: draws the heatmaps from the JSON embedded in the page (heatmap.py writes it).
// Every text from the data goes in with textContent: a node name can never become markup.
(function () {
  "use strict";
  var root = document.documentElement;
  var began = performance.now();
  var data = JSON.parse(document.getElementById("meshperf-data").textContent);
  var S = data.strings;
  // Direction-aware colours: t = 1 is good (blue), t = 0 bad (red), whatever the metric.
  var BAD = [215, 48, 39], MID = [254, 224, 144], GOOD = [69, 117, 180];
  var VIEWS = {
    value: "value",
    median: "against the median",
    asymmetry: "a\u2192b against b\u2192a",
    change: "change"
  };
  var CHANGE_REACH = 0.1;   // the change view: at least this much worse (10%) is full red

  function mix(a, b, t) {
    return [0, 1, 2].map(function (i) { return Math.round(a[i] + (b[i] - a[i]) * t); });
  }
  function colour(t) {
    t = Math.max(0, Math.min(1, t));
    return t < 0.5 ? mix(BAD, MID, t * 2) : mix(MID, GOOD, (t - 0.5) * 2);
  }
  function css(c) { return "rgb(" + c.join(",") + ")"; }
  function isDark(c) { return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2] < 150; }
  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }
  function pct(x) {
    var v = Math.round(x * 1000) / 10;
    return (v > 0 ? "+" : v < 0 ? "\u2212" : "\u00b1") + Math.abs(v) + "%";
  }
  function lowerMedian(values) {
    var sorted = values.slice().sort(function (a, b) { return a - b; });
    return sorted.length ? sorted[Math.floor((sorted.length - 1) / 2)] : null;
  }

  function Heatmap(hm, container) {
    var self = this;
    this.hm = hm;
    this.ncols = hm.cols.length;
    this.size = this.ncols <= 10 ? "large" : this.ncols <= 40 ? "medium" : "small";
    this.byPos = {};
    hm.cells.forEach(function (c) { self.byPos[c[0] * self.ncols + c[1]] = c; });
    // The chooser offers the scales (metrics) that some cell of this heatmap has a value for.
    this.scales = hm.scales.map(function (s, i) { return {key: s.key, label: s.label, hib: s.hib, index: i}; })
      .filter(function (s) { return hm.cells.some(function (c) { return c[3][s.index] !== null; }); });
    this.scale = this.scales[0] || null;
    // States drawn beyond colour (heatmap.py's State): name -> {look, legend, text}.
    this.states = {};
    (hm.states || []).forEach(function (s) { self.states[s.name] = s; });
    this.view = hm.views[0] || "value";
    this.pinned = null;
    this.build(container);
    this.paint();
  }

  Heatmap.prototype.build = function (container) {
    var self = this, hm = this.hm;
    var bar = el("div", "hm-bar");
    if (this.scales.length) {
      var metric = this.metricSelect = el("select", "hm-metric");
      metric.setAttribute("aria-label", "metric");
      this.scales.forEach(function (s, i) { var o = el("option", null, s.label); o.value = i; metric.appendChild(o); });
      metric.addEventListener("change", function () { self.scale = self.scales[+metric.value]; self.paint(); });
      bar.appendChild(el("label", null, "colour by ")).appendChild(metric);
      if (hm.views.length > 1) {
        var view = this.viewSelect = el("select", "hm-view");
        view.setAttribute("aria-label", "view");
        hm.views.forEach(function (v) { var o = el("option", null, VIEWS[v] || v); o.value = v; view.appendChild(o); });
        view.addEventListener("change", function () { self.view = view.value; self.paint(); });
        bar.appendChild(el("label", null, " showing ")).appendChild(view);
      }
    }
    this.legend = el("div", "hm-legend");
    bar.appendChild(this.legend);
    container.appendChild(bar);

    var wrap = el("div", "hm-wrap");
    var scroll = el("div", "hm-scroll");
    var table = this.table = el("table", "hm-table hm-" + this.size);
    var every = this.size === "small" ? Math.ceil(this.ncols / 50) : 1;   // labels thin out, cells do not
    var head = el("tr");
    head.appendChild(el("th", "hm-corner", this.size === "large" ? "from \u2193  to \u2192" : ""));
    this.colHeads = hm.cols.map(function (name, i) {
      var th = el("th", "hm-col", i % every === 0 ? name : "");
      th.title = name;
      head.appendChild(th);
      return th;
    });
    table.appendChild(el("thead")).appendChild(head);
    var body = el("tbody");
    this.rowHeads = [];
    this.tds = [];
    hm.rows.forEach(function (src, r) {
      var tr = el("tr");
      var th = el("th", "hm-row", r % every === 0 ? src : "");
      th.title = src;
      self.rowHeads.push(th);
      tr.appendChild(th);
      hm.cols.forEach(function (dst, c) {
        var td = el("td", "c");
        if (src === dst) {
          td.className = "c self";
        } else {
          var cell = self.byPos[r * self.ncols + c];
          td.dataset.src = src;
          td.dataset.dst = dst;
          td.dataset.state = cell ? S[cell[2]] : hm.absent || "none";
          td.dataset.r = r;
          td.dataset.c = c;
          self.tds.push(td);
        }
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
    table.appendChild(body);
    this.outline(body);
    scroll.appendChild(table);
    wrap.appendChild(scroll);
    this.panel = el("aside", "detail");
    wrap.appendChild(this.panel);
    container.appendChild(wrap);
    this.showHint();

    table.addEventListener("mouseover", function (e) {
      var td = e.target.closest ? e.target.closest("td[data-src]") : null;
      self.highlight(td);
      if (td && !self.pinned) self.show(td);
    });
    table.addEventListener("mouseleave", function () { self.highlight(null); if (!self.pinned) self.showHint(); });
    table.addEventListener("click", function (e) {
      var td = e.target.closest ? e.target.closest("td[data-src]") : null;
      if (!td) return;
      self.pin(self.pinned === td ? null : td);
    });
  };

  // Findings (the diagnosis): each one's cells framed as one shape, its title in data-finding.
  Heatmap.prototype.outline = function (body) {
    var ncols = this.ncols, rows = body.rows;
    (this.hm.outlines || []).forEach(function (o) {
      var inside = {};
      o.cells.forEach(function (rc) { inside[rc[0] * ncols + rc[1]] = true; });
      o.cells.forEach(function (rc) {
        var r = rc[0], c = rc[1], td = rows[r] && rows[r].cells[c + 1];   // cells[0] is the row's head
        if (!td) return;
        var frame = ["finding", "finding-" + o.status];
        if (r === 0 || !inside[(r - 1) * ncols + c]) frame.push("fe-t");
        if (!inside[(r + 1) * ncols + c]) frame.push("fe-b");
        if (c === 0 || !inside[r * ncols + c - 1]) frame.push("fe-l");
        if (c === ncols - 1 || !inside[r * ncols + c + 1]) frame.push("fe-r");
        // paint() sets className again: it adds data-frame back
        td.dataset.frame = ((td.dataset.frame || "") + " " + frame.join(" ")).trim();
        td.dataset.finding = td.dataset.finding ? td.dataset.finding + "; " + o.title : o.title;
        frame.forEach(function (name) { td.classList.add(name); });
      });
    });
  };

  Heatmap.prototype.choose = function (metric, view) {
    var i = this.scales.map(function (s) { return s.key; }).indexOf(metric);
    if (i >= 0) { this.scale = this.scales[i]; this.metricSelect.value = i; }
    if (view && this.hm.views.indexOf(view) >= 0 && this.viewSelect) { this.view = view; this.viewSelect.value = view; }
    if (i >= 0 || view) this.paint();
  };

  Heatmap.prototype.pin = function (td) {
    if (this.pinned) this.pinned.classList.remove("pinned");
    this.pinned = td;
    if (td) { td.classList.add("pinned"); this.show(td); } else { this.showHint(); }
  };

  Heatmap.prototype.highlight = function (td) {
    if (this.lit) this.lit.forEach(function (th) { th.classList.remove("hl"); });
    this.lit = td ? [this.rowHeads[+td.dataset.r], this.colHeads[+td.dataset.c]] : null;
    if (this.lit) this.lit.forEach(function (th) { th.classList.add("hl"); });
  };

  Heatmap.prototype.look = function (state) {
    var known = this.states[state];
    return known ? known.look : state === "none" ? "none" : "value";
  };

  Heatmap.prototype.values = function () {
    // The values of the chosen scale, of every cell that has one (an error has none: never a zero).
    var self = this, i = this.scale.index, out = [];
    this.hm.cells.forEach(function (c) { if (c[3][i] !== null && self.look(S[c[2]]) !== "error") out.push(c[3][i]); });
    return out;
  };

  Heatmap.prototype.paint = function () {
    var self = this, hm = this.hm, scale = this.scale;
    var values = scale ? this.values() : [];
    var big = values.reduce(function (m, v) { return Math.max(m, Math.abs(v)); }, 0);
    var best = values.length ? (scale.hib ? Math.max.apply(null, values) : Math.min.apply(null, values)) : null;
    var median = lowerMedian(values);
    var reach = Math.max(big, CHANGE_REACH);
    var worstCell = null, bestCell = null, medianCell = null, worstT = 2, bestT = -1;
    this.tds.forEach(function (td) {
      var cell = self.byPos[+td.dataset.r * self.ncols + +td.dataset.c];
      var state = td.dataset.state, look = self.look(state), info = self.states[state] || {};
      var text = "", t = null, tip = null;
      td.className = "c st-" + (look === "value" ? "ok" : look) + (td.dataset.frame ? " " + td.dataset.frame : "");
      td.style.background = "";
      td.style.color = "";
      var v = cell && scale ? cell[3][scale.index] : null;
      var label = cell && scale && cell[4][scale.index] >= 0 ? S[cell[4][scale.index]] : null;
      if (look === "error" || look === "none" || look === "blank" || !cell) {
        text = look === "error" ? (self.size === "large" ? info.text || "error" : "\u00d7") : "";
        tip = info.legend || "not measured";
      } else if (v === null) {
        if (look === "value") td.classList.add("na");
        text = self.size === "large" ? info.text || "n/a" : "";
        tip = info.legend || "no " + (scale ? scale.label : "value");
      } else if (self.view === "median") {
        var ref = Math.abs(median) || big;
        var shortfall = scale.hib ? median - v : v - median;
        t = ref ? 1 - Math.max(0, Math.min(1, shortfall / ref)) : 1;
        text = median ? pct((v - median) / Math.abs(median)) : label;
        tip = label + " (" + text + " against the median)";
      } else if (self.view === "asymmetry") {
        var back = self.byPos[+td.dataset.c * self.ncols + +td.dataset.r];
        var w = back && S[back[2]] !== "error" ? back[3][scale.index] : null;
        if (w === null) {
          td.classList.add("na");
          text = self.size === "large" ? "no b\u2192a" : "";
          tip = label + " (no measurement the other way)";
        } else {
          var m = Math.max(Math.abs(v), Math.abs(w));
          var asym = m ? (v - w) / m : 0;
          t = 1 - Math.min(1, Math.abs(asym));
          text = pct(asym);
          tip = label + " against " + S[back[4][scale.index]] + " the other way (" + text + ")";
        }
      } else if (self.view === "change") {
        // v is a relative change: coloured around "no change", worse (by the scale's direction) always red
        t = 0.5 - 0.5 * Math.max(-1, Math.min(1, (scale.hib ? -v : v) / reach));
        text = label;
        tip = label;
      } else {
        t = big ? 1 - Math.abs(v - best) / big : 1;
        text = label;
        tip = label;
        if (t < worstT) { worstT = t; worstCell = cell; }
        if (t > bestT) { bestT = t; bestCell = cell; }
        if (v === median && !medianCell) medianCell = cell;
      }
      if (t !== null) {
        var c = colour(t);
        td.style.background = css(c);
        td.style.color = isDark(c) ? "#fff" : "#111";
      }
      if (self.view === "median" && v === median && !medianCell) medianCell = cell;
      if (self.size !== "large") text = look === "error" ? "\u00d7" : "";
      if (look === "failed") text = self.size === "large" ? (text ? text + " !" : "!") : "!";
      td.textContent = text;
      td.title = td.dataset.src + " \u2192 " + td.dataset.dst + ": " + tip +
        (look === "failed" ? " (" + (info.legend || state) + ")" : "");
    });
    this.paintLegend(worstCell, bestCell, medianCell, reach);
    if (this.pinned) this.show(this.pinned);
  };

  Heatmap.prototype.paintLegend = function (worstCell, bestCell, medianCell, reach) {
    var legend = this.legend, scale = this.scale;
    legend.textContent = "";
    if (!scale) { legend.appendChild(el("span", "hm-note", "no values to colour by")); return; }
    var i = scale.index;
    var left, right;
    if (this.view === "median") {
      left = "100% worse than the median";
      right = "at or better than the median" + (medianCell ? " (" + S[medianCell[4][i]] + ")" : "");
    } else if (this.view === "change") {
      var most = Math.round(reach * 1000) / 10 + "% or more";
      left = "worse by " + most;
      right = "better by " + most;
    } else if (this.view === "asymmetry") {
      left = "one way 100% off the other";
      right = "both ways equal";
    } else {
      left = (scale.hib ? "lowest: " : "highest: ") + (worstCell ? S[worstCell[4][i]] : "\u2013");
      right = "best: " + (bestCell ? S[bestCell[4][i]] : "\u2013");
    }
    legend.appendChild(el("span", "hm-end", left));
    legend.appendChild(el("span", "hm-ramp"));
    legend.appendChild(el("span", "hm-end", right));
    var key = el("span", "hm-key");
    (this.hm.states || []).forEach(function (s) {
      key.appendChild(el("span", "k st-" + s.look, s.look === "failed" ? "!" : s.look === "error" ? "\u00d7" : ""));
      key.appendChild(document.createTextNode(" " + s.legend + " "));
    });
    legend.appendChild(key);
  };

  Heatmap.prototype.showHint = function () {
    var panel = this.panel;
    panel.textContent = "";
    panel.appendChild(el("p", "hint", "Hover over a cell for its measurement; click to keep it here."));
  };

  Heatmap.prototype.show = function (td) {
    var panel = this.panel, cell = this.byPos[+td.dataset.r * this.ncols + +td.dataset.c];
    panel.textContent = "";
    var title = el("h3", null, td.dataset.src + " \u2192 " + td.dataset.dst);
    panel.appendChild(title);
    var state = td.dataset.state, info = this.states[state] || {};
    panel.appendChild(el("div", "badge st-" + this.look(state), state === "none" || state === "unplanned"
                                                                 ? info.legend || "not measured"
                                                                 : state.replace(/_/g, " ")));
    if (this.pinned === td) panel.appendChild(el("span", "pin-note", " pinned (click again to release)"));
    if (!cell) {
      panel.appendChild(el("p", "hint", info.text || "This pair has no measurement."));
      return;
    }
    cell[6].forEach(function (m) { panel.appendChild(el("span", "mark", S[m])); });
    cell[5].forEach(function (section) {
      panel.appendChild(el("h4", null, S[section[0]]));
      var table = el("table", "kv");
      section[1].forEach(function (row) {
        var tr = el("tr", S[row[2]] || null);
        tr.appendChild(el("th", null, S[row[0]]));
        tr.appendChild(el("td", null, S[row[1]]));
        table.appendChild(tr);
      });
      panel.appendChild(table);
    });
  };

  var drawn = [];
  try {
    data.heatmaps.forEach(function (hm) {
      var container = document.querySelector('.heatmap[data-heatmap="' + CSS.escape(hm.key) + '"]');
      if (container) drawn.push(new Heatmap(hm, container));
    });
    // The address's #fragment chooses for links and screenshots: view=median|asymmetry, metric=KEY (in every
    // heatmap that has it), pin=SRC->DST (that pair's details kept open in the first heatmap that has it).
    var asked = {};
    location.hash.replace(/^#/, "").split("&").forEach(function (part) {
      var at = part.indexOf("=");
      if (at > 0) asked[part.slice(0, at)] = decodeURIComponent(part.slice(at + 1));
    });
    drawn.forEach(function (h) { h.choose(asked.metric, asked.view); });
    var wanted = asked.pin;
    if (wanted) {
      for (var i = 0; i < drawn.length; i++) {
        var hit = drawn[i].tds.filter(function (td) { return td.dataset.src + "->" + td.dataset.dst === wanted; })[0];
        if (hit) { drawn[i].pin(hit); break; }
      }
    }
    root.dataset.rendered = "yes";
    root.dataset.renderMs = Math.round(performance.now() - began);   // docs/performance.md
  } catch (err) {
    root.dataset.rendered = "error";
    root.dataset.renderError = String(err);
    throw err;
  }
  // For screenshots (browser.py): the width the widest matrix and its details need, and the page's height.
  var body = getComputedStyle(document.body);
  var pad = parseFloat(body.paddingLeft) + parseFloat(body.paddingRight);
  root.dataset.fitWidth = Math.ceil(drawn.reduce(function (w, h) {
    return Math.max(w, h.table.offsetWidth + 18 + h.panel.offsetWidth + pad + 4);
  }, 0));
  root.dataset.pageHeight = Math.ceil(document.documentElement.scrollHeight);
})();
