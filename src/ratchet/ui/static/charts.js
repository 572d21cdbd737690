/* ratchet charts (Chart.js): score over rounds with 95% bands, paired effects, cost, per-task deltas. */
(function (R) {
  "use strict";
  const C = {
    dev: "#2563eb", devBand: "rgba(37,99,235,0.14)", hold: "#ea580c", holdBand: "rgba(234,88,12,0.13)",
    ok: "#16a34a", bad: "#dc2626", other: "#6b7280", grid: "rgba(0,0,0,0.06)",
  };
  R.colors = C;

  // Whiskers from point.lo to point.hi for scatter datasets that set errorBars: true.
  const errorBars = {
    id: "errorBars",
    afterDatasetsDraw(chart) {
      const { ctx, scales } = chart;
      chart.data.datasets.forEach((ds, i) => {
        if (!ds.errorBars || !chart.isDatasetVisible(i)) return;
        ctx.save();
        ctx.strokeStyle = ds.borderColor;
        ctx.lineWidth = 1.5;
        for (const p of ds.data) {
          if (!R.isNum(p.lo) || !R.isNum(p.hi)) continue;
          const x = scales.x.getPixelForValue(p.x), y1 = scales.y.getPixelForValue(p.lo), y2 = scales.y.getPixelForValue(p.hi);
          ctx.beginPath(); ctx.moveTo(x, y1); ctx.lineTo(x, y2);
          ctx.moveTo(x - 4, y1); ctx.lineTo(x + 4, y1); ctx.moveTo(x - 4, y2); ctx.lineTo(x + 4, y2);
          ctx.stroke();
        }
        ctx.restore();
      });
    },
  };

  function make(name, canvas, config) {
    config.options = Object.assign({ animation: false, responsive: true, maintainAspectRatio: false }, config.options);
    config.plugins = (config.plugins || []).concat([errorBars]);
    R.afterMount.push(() => {
      if (R.charts[name]) R.charts[name].destroy();
      R.charts[name] = new window.Chart(canvas, config);
    });
  }

  const box = (id, height) => R.h("div", { class: "chartbox", style: "height:" + (height || 320) + "px" }, R.h("canvas", { id: id }));
  const pts = (rows, key) => rows.filter((r) => R.isNum(r[key])).map((r) => Object.assign({ x: r.round, y: r[key] }, r));
  const band = (rows, key) => rows.map((r) => ({ x: r.round, y: R.isNum(r[key]) ? r[key] : r.mean }));
  const legendNoBands = { labels: { filter: (item, data) => !data.datasets[item.datasetIndex].isBand } };
  const goToCandidate = (evt, elements, chart) => {
    const el = elements[0];
    const p = el && chart.data.datasets[el.datasetIndex].data[el.index];
    if (p && p.candidate) window.location.hash = "#/candidate/" + encodeURIComponent(p.candidate);
  };
  const tipLabel = (ctx) => {
    const p = ctx.raw;
    const lines = [ctx.dataset.label + ": " + R.fmt(p.y) + (R.isNum(p.lo) ? " (95% " + R.fmt(p.lo) + "–" + R.fmt(p.hi) + ")" : "")];
    if (p.candidate) lines.push(p.candidate + (p.summary ? " — " + p.summary.slice(0, 80) : ""));
    return lines;
  };

  R.scoreChart = function (series) {
    const s = series || {};
    const datasets = [];
    const line = (rows, label, color, bandColor, dashed) => {
      if (!rows || !rows.length) return;
      datasets.push({ label: label, data: pts(rows, "mean"), borderColor: color, backgroundColor: color, stepped: "before",
        borderDash: dashed ? [6, 4] : [], pointRadius: 2, borderWidth: 2, order: 2 });
      if (rows.some((r) => R.isNum(r.lo))) {
        datasets.push({ label: label + " 95% hi", isBand: true, data: band(rows, "hi"), borderWidth: 0, pointRadius: 0,
          stepped: "before", fill: false, order: 3 });
        datasets.push({ label: label + " 95% lo", isBand: true, data: band(rows, "lo"), borderWidth: 0, pointRadius: 0,
          stepped: "before", fill: "-1", backgroundColor: bandColor, order: 3 });
      }
    };
    line(s.best_dev, "dev: kept", C.dev, C.devBand, false);
    line(s.best_holdout, "holdout: kept", C.hold, C.holdBand, true);
    const marks = (rows, outcome, label, color, style) => {
      const data = pts((rows || []).filter((r) => outcome(r.outcome)), "mean");
      if (data.length) datasets.push({ type: "scatter", label: label, data: data, borderColor: color, backgroundColor: color,
        pointStyle: style, pointRadius: 7, pointHoverRadius: 9, errorBars: true, order: 1 });
    };
    marks(s.cand_dev, (o) => o === "accepted", "dev: accepted", C.ok, "triangle");
    marks(s.cand_dev, (o) => o === "rejected", "dev: rejected", C.bad, "crossRot");
    marks(s.cand_dev, (o) => o !== "accepted" && o !== "rejected", "dev: pending / other", C.other, "rectRot");
    marks(s.cand_holdout, () => true, "holdout: candidate", C.hold, "circle");
    const canvas = box("score-chart", 340);
    if (!datasets.length) return R.h("p", { class: "muted" }, "No scores yet.");
    make("score", canvas.firstChild, {
      type: "line", data: { datasets: datasets },
      options: {
        onClick: goToCandidate,
        scales: { x: { type: "linear", title: { display: true, text: "round" }, ticks: { stepSize: 1, precision: 0 }, grid: { color: C.grid } },
          y: { title: { display: true, text: "score (mean, 95% CI)" }, suggestedMin: 0, suggestedMax: 1, grid: { color: C.grid } } },
        plugins: { legend: legendNoBands, tooltip: { filter: (i) => !i.dataset.isBand, callbacks: { label: tipLabel } } },
      },
    });
    return canvas;
  };

  // Floating bars: the 95% interval of the paired difference (candidate − parent), per round.
  R.effectChart = function (candidates) {
    const rows = (candidates || []).filter((c) => R.isNum(c.dev_diff));
    if (!rows.length) return R.h("p", { class: "muted" }, "No paired comparisons yet.");
    const labels = rows.map((c) => "r" + c.round);
    const colour = (c) => (c.outcome === "accepted" ? C.ok : c.outcome === "rejected" ? C.bad : C.other);
    const canvas = box("effect-chart", 260);
    make("effect", canvas.firstChild, {
      type: "bar",
      data: { labels: labels, datasets: [
        { type: "scatter", label: "mean Δ (dev)", data: rows.map((c, i) => ({ x: labels[i], y: c.dev_diff, candidate: c.id })),
          backgroundColor: "#111827", pointRadius: 4, order: 0 },
        // overlaid, not grouped: the narrow holdout bar sits inside the dev bar of the same round
        { label: "dev interval of Δ", data: rows.map((c) => (R.isNum(c.dev_ci[0]) ? [c.dev_ci[0], c.dev_ci[1]] : null)),
          backgroundColor: rows.map((c) => colour(c) + "66"), borderColor: rows.map(colour), borderWidth: 1, order: 2,
          grouped: false, barPercentage: 0.75 },
        { label: "holdout interval of Δ", data: rows.map((c) => (c.holdout_ci && R.isNum(c.holdout_ci[0]) ? [c.holdout_ci[0], c.holdout_ci[1]] : null)),
          backgroundColor: "rgba(234,88,12,0.35)", borderColor: C.hold, borderWidth: 2, order: 1, grouped: false, barPercentage: 0.3 },
      ] },
      options: {
        onClick: (evt, els, chart) => { const c = els[0] && rows[els[0].index]; if (c) window.location.hash = "#/candidate/" + encodeURIComponent(c.id); },
        scales: { x: { type: "category", labels: labels }, y: { title: { display: true, text: "candidate − parent" }, grid: { color: (ctx) => (ctx.tick.value === 0 ? "#111827" : C.grid) } } },
        plugins: { tooltip: { callbacks: { afterBody: (items) => { const c = rows[items[0].dataIndex];
          return c ? ["p = " + R.fmt(c.dev_p, 4) + (R.isNum(c.dev_ci_level) ? ", dev interval " + R.pct(c.dev_ci_level, 0) : ""),
            c.summary.slice(0, 80)] : []; } } } },
      },
    });
    return canvas;
  };

  R.costChart = function (cost, budget) {
    if (!cost || !cost.length) return R.h("p", { class: "muted" }, "No cost recorded yet.");
    const cap = (name) => { const b = (budget || []).find((x) => x.name === name); return b && R.isNum(b.max) ? b.max : null; };
    const xs = cost.map((c) => c.round);
    const datasets = [
      { label: "rollouts (cumulative)", data: cost.map((c) => ({ x: c.round, y: c.cum_rollouts })), borderColor: C.dev, backgroundColor: C.dev, yAxisID: "y" },
      { label: "tokens (cumulative)", data: cost.map((c) => ({ x: c.round, y: c.cum_tokens })), borderColor: "#7c3aed", backgroundColor: "#7c3aed", yAxisID: "y1" },
    ];
    const limit = (name, axis, color) => { const m = cap(name); if (m !== null) datasets.push({ label: name + " budget", yAxisID: axis,
      data: [{ x: Math.min(...xs), y: m }, { x: Math.max(...xs), y: m }], borderColor: color, borderDash: [4, 4], pointRadius: 0, borderWidth: 1 }); };
    limit("rollouts", "y", C.dev);
    limit("tokens", "y1", "#7c3aed");
    const canvas = box("cost-chart", 260);
    make("cost", canvas.firstChild, {
      type: "line", data: { datasets: datasets },
      options: { scales: {
        x: { type: "linear", title: { display: true, text: "round" }, ticks: { stepSize: 1, precision: 0 }, grid: { color: C.grid } },
        y: { position: "left", beginAtZero: true, title: { display: true, text: "rollouts" }, grid: { color: C.grid } },
        y1: { position: "right", beginAtZero: true, title: { display: true, text: "tokens" }, grid: { drawOnChartArea: false } } } },
    });
    return canvas;
  };

  R.perTaskChart = function (perTask) {
    const rows = (perTask || []).filter((r) => R.isNum(r.diff));
    if (!rows.length) return R.h("p", { class: "muted" }, "No per-task differences recorded.");
    const canvas = box("per-task-chart", 240);
    make("perTask", canvas.firstChild, {
      type: "bar",
      data: { labels: rows.map((r) => r.task), datasets: [{ label: "candidate − parent (per task, mean over epochs)",
        data: rows.map((r) => r.diff), backgroundColor: rows.map((r) => (r.diff > 0 ? C.ok : r.diff < 0 ? C.bad : C.other)) }] },
      options: { scales: { x: { ticks: { display: rows.length <= 40, autoSkip: true } }, y: { suggestedMin: -1, suggestedMax: 1 } },
        plugins: { legend: { display: false } } },
    });
    return canvas;
  };

  R.generationChart = function (metrics) {
    const names = Object.keys((metrics && metrics.series) || {});
    if (!names.length) return R.h("p", { class: "muted" }, "No accuracy recorded per generation.");
    const palette = [C.dev, C.hold, C.ok, "#7c3aed", C.bad, C.other];
    const canvas = box("generation-chart", 280);
    make("generations", canvas.firstChild, {
      type: "line",
      data: { labels: metrics.labels, datasets: names.map((n, i) => ({ label: n, data: metrics.series[n],
        borderColor: palette[i % palette.length], backgroundColor: palette[i % palette.length], spanGaps: true })) },
      options: { scales: { x: { title: { display: true, text: "generation" } } } },
    });
    return canvas;
  };

  R.examplesChart = function (examples) {
    const gens = (examples && examples.by_generation) || [];
    if (!gens.length) return R.h("p", { class: "muted" }, "No examples per generation.");
    const keys = [...new Set(gens.flatMap((g) => Object.keys(g.counts)))];
    const palette = [C.dev, C.hold, "#7c3aed", C.other, "#0891b2"];
    // colour by meaning where the outcome name says it; the rest take the palette in turn
    const reds = [C.bad, "#f87171", "#991b1b", "#fca5a5"];
    const dropped = keys.filter((k) => /reject|fail|filter|drop/i.test(k));
    const colour = (k, i) => (/kept|accept|pass|^ok$/i.test(k) ? C.ok : dropped.includes(k) ? reds[dropped.indexOf(k) % reds.length] : palette[i % palette.length]);
    const canvas = box("examples-chart", 260);
    make("examples", canvas.firstChild, {
      type: "bar",
      data: { labels: gens.map((g) => String(g.generation)), datasets: keys.map((k, i) => ({ label: k,
        data: gens.map((g) => g.counts[k] || 0), backgroundColor: colour(k, i) })) },
      options: { scales: { x: { stacked: true }, y: { stacked: true, title: { display: true, text: "examples" } } } },
    });
    return canvas;
  };
})(window.R = window.R || {});
