/* ratchet pages: trajectories (filtered), memory (searchable lessons), approval queue, flywheel. */
(function (R) {
  "use strict";
  const h = R.h;
  R.pages = R.pages || {};
  const PAGE = 50;

  const select = (name, value, options, onchange) => h("label", { class: "filter" }, name + " ",
    h("select", { name: name, id: "filter-" + name, onchange: (e) => onchange(name, e.target.value) },
      options.map(([v, label]) => h("option", { value: v, selected: v === (value || "") }, label))));

  R.pages.trajectories = {
    poll: false,
    load(route) {
      const q = Object.assign({}, route.query);
      if (!q.run && !R.LIVE) q.run = R.boot.data.meta.run;
      return Promise.all([
        R.get("trajectories", { run: q.run, candidate: q.candidate, split: q.split, signal: q.signal, offset: q.offset || 0, limit: PAGE }),
        q.run ? R.get("run/" + encodeURIComponent(q.run)) : Promise.resolve(null),
        R.LIVE ? R.get("runs") : Promise.resolve([]),
      ]).then(([result, run, runs]) => ({ q: q, result: result, run: run, runs: runs }));
    },
    render(d) {
      const q = d.q, res = d.result;
      const go = (name, value) => {
        const next = Object.assign({}, q, { [name]: value, offset: 0 });
        if (name === "run") delete next.candidate;
        window.location.hash = "#/trajectories" + R.qs(next);
      };
      const count = (facet) => Object.entries(facet).map(([k, n]) => [k, k + " (" + n + ")"]);
      const filters = h("div", { class: "filters" },
        R.LIVE ? select("run", q.run, [["", "all runs"]].concat(d.runs.map((r) => [r.id, r.id])), go) : null,
        select("candidate", q.candidate, [["", "all candidates"]].concat(d.run ? d.run.candidates.map((c) => [c.id, "r" + c.round + " " + R.short(c.id)]) : []), go),
        select("split", q.split, [["", "all splits"]].concat(count(res.facets.split)), go),
        select("signal", q.signal, [["", "all signals"]].concat(count(res.facets.signal)), go));
      const offset = +(q.offset || 0);
      const pager = h("div", { class: "pager" }, h("span", { id: "traj-count" }, res.total + " rollouts"),
        offset > 0 ? h("button", { class: "btn", onclick: () => go("offset", Math.max(0, offset - PAGE)) }, "← previous") : null,
        offset + PAGE < res.total ? h("button", { class: "btn", onclick: () => go("offset", offset + PAGE) }, "next →") : null,
        res.total ? h("span", { class: "muted" }, " showing " + (offset + 1) + "–" + Math.min(res.total, offset + PAGE)) : null);
      const note = !R.LIVE && R.boot.data.meta.trajectories_truncated ?
        h("p", { class: "hint" }, "This report carries the first " + R.boot.data.trajectories.length + " rollouts of the run; the live dashboard has all of them.") : null;
      return R.card("Trajectories", filters, note, pager,
        h("div", { class: "trajs" }, res.items.length ? res.items.map(R.trajectoryView) : h("p", { class: "muted" }, "No rollouts match.")));
    },
  };

  const lessonMatches = (l, words) => {
    const hay = (l.text + " " + JSON.stringify(l.data) + " " + (l.candidate_id || "")).toLowerCase();
    return words.every((w) => hay.includes(w));
  };

  R.pages.memory = {
    poll: false,
    load(route) {
      const run = route.query.run || (!R.LIVE ? R.boot.data.meta.run : "");
      return R.get("lessons", { run: run }).then((lessons) => ({ lessons: lessons.filter((l) => !run || l.run_id === run), run: run }));
    },
    render(d, route) {
      const list = h("div", { class: "lessons", id: "lessons" });
      const countEl = h("span", { class: "muted", id: "lesson-count" });
      const draw = (text) => {
        const words = text.toLowerCase().split(/\s+/).filter(Boolean);
        const shown = d.lessons.filter((l) => lessonMatches(l, words));
        countEl.textContent = shown.length + " of " + d.lessons.length + " lessons";
        list.replaceChildren(...shown.map((l) => {
          const data = l.data || {};
          return h("article", { class: "lesson" },
            h("div", { class: "lesson-head" }, "round " + l.round + " · ", R.candLink(l.candidate_id), " ",
              data.decision ? R.badge(data.decision) : null,
              R.isNum(data.effect) ? h("span", { class: "muted" }, " effect " + R.signed(data.effect) + " " + R.ci(data.ci_low, data.ci_high)) : null,
              h("span", { class: "muted" }, " · run " + l.run_id)),
            h("p", { class: "prose" }, l.text));
        }));
      };
      const input = h("input", { type: "search", id: "lesson-search", placeholder: "search lessons (words, candidate ids, signals)",
        value: route.query.q || "", oninput: (e) => draw(e.target.value) });
      draw(input.value);
      return R.card("Memory" + (d.run ? " of run " + d.run : ""), h("div", { class: "filters" }, input, countEl), list);
    },
  };

  R.pages.approvals = {
    poll: true,
    load: () => R.get("approvals"),
    render(items, route, rerender) {
      if (!items.length) return R.card("Approval queue", h("p", { class: "muted" }, "Nothing is waiting for approval."));
      return R.card("Approval queue", h("p", { class: "hint" }, "Candidates at the approval gate (risky ones, or every one when approve = \"always\") wait here before evaluation; the loop resumes when you decide."),
        items.map((c) => h("div", { class: "queue-item" },
          h("div", null, h("b", null, "Round " + c.round + " "), R.candLink(c.id), " · run ", R.runLink(c.run_id), " · " + c.proposer),
          h("p", { class: "prose" }, c.summary), c.rationale ? h("p", { class: "muted" }, c.rationale) : null,
          h("div", null, R.link("#/candidate/" + encodeURIComponent(c.id), "review the diff (" + c.diff_lines + " lines)")),
          R.approvalBox(c.id, c.risky, rerender))));
    },
  };

  // any table's rows: times as times, JSON shortened (the full value is in the cell's tooltip)
  const genericTable = (columns, rows) => R.table(columns, rows.map((r) => columns.map((k) => {
    const v = r[k];
    if (v !== null && typeof v === "object") {
      const text = JSON.stringify(v);
      return h("code", { title: text.length > 160 ? text : null }, text.length > 160 ? text.slice(0, 160) + "…" : text);
    }
    return k.endsWith("_at") && R.isNum(v) ? R.time(v) : v ?? "–";
  })));

  const modelNode = (n) => h("li", { class: n.status === "rejected" ? "" : "on-path" },
    h("span", { class: "node" }, h("span", { class: "mono" }, n.id), " ", n.status ? R.badge(n.status) : null),
    n.children.length ? h("ul", null, n.children.map(modelNode)) : null);

  R.pages.flywheel = {
    poll: true,
    load: () => R.get("flywheel"),
    render(d) {
      if (!d) return R.card("Flywheel", h("p", { class: "muted" }, "No flywheel data in this ledger."));
      return h("div", null,
        h("div", { class: "cols" },
          R.card("Accuracy per generation", R.generationChart(d.metrics)),
          R.card("Examples per generation" + (d.examples.filter_key ? " by " + d.examples.filter_key : ""), R.examplesChart(d.examples))),
        R.card("Generations (" + d.counts.fw_generations + ")", genericTable(d.generation_columns, d.generations)),
        R.card("Model lineage", d.model_tree.length ? h("ul", { class: "tree" }, d.model_tree.map(modelNode)) : h("p", { class: "muted" }, "No model lineage recorded.")),
        R.card("Models (" + (d.counts.models || 0) + ")", genericTable(d.model_columns, d.models)));
    },
  };
})(window.R = window.R || {});
