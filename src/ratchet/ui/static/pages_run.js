/* ratchet pages: the runs list, one run, one candidate. Each page is {load(route) -> data, render(data, route) -> Node}. */
(function (R) {
  "use strict";
  const h = R.h;
  R.pages = R.pages || {};

  const stat = (label, value, sub) => h("div", { class: "stat" }, h("div", { class: "label" }, label),
    h("div", { class: "value" }, value), sub ? h("div", { class: "sub" }, sub) : null);
  const change = (a, b) => (R.isNum(a) && R.isNum(b) ? R.fmt(a) + " → " + R.fmt(b) : R.fmt(R.isNum(b) ? b : a));

  // The closing report (summary.report, typed and shaped by ui/views.closing_report): seed vs best per split,
  // each side with its 95% interval, the paired difference with its interval and p, and the seed it was measured with.
  const sideText = (x) => R.fmt(x.mean) + (R.isNum(x.ci[0]) ? " [" + R.fmt(x.ci[0]) + ", " + R.fmt(x.ci[1]) + "]" : "");
  const pairedSub = (r) => "Δ " + R.signed(r.diff) + " " + R.ci(r.ci[0], r.ci[1]) + ", p = " + R.fmt(r.p_value, 4) +
    " · " + r.n_tasks + " × " + r.epochs + " · " + r.measured_with;
  const reportRow = (rep, split) => (rep ? rep.rows.find((r) => r.split === split) : null);
  const reportCard = (rep) => R.card("Seed vs best, reconciled",
    h("p", { class: "hint" }, "Each split paired on the same " + rep.unit + " and seeds: each side's 95% interval (SE clustered by task), " +
      "the difference's bootstrap interval, the one-sided p of best > seed, and the evaluation seed the figures share." +
      (rep.stale ? " This report is of an earlier best: the run kept another harness since." : "")),
    R.table(["split", "seed", "best", "best − seed", "interval", "p", "n", "measured with", "detects (80% power)"],
      rep.rows.map((r) => [r.split, sideText(r.seed), sideText(r.best), R.signed(r.diff),
        R.ci(r.ci[0], r.ci[1]) + (R.isNum(r.ci_level) ? " " + R.pct(r.ci_level, 0) : ""),
        R.fmt(r.p_value, 4) + (r.significant ? " *" : ""), r.n_tasks + " " + rep.unit + " × " + r.epochs,
        r.measured_with + (R.isNum(r.eval_seed) ? " (" + r.eval_seed + ")" : ""),
        R.isNum(r.detectable) ? "≥ " + R.fmt(r.detectable) : "no gain"]), "reconciled"),
    h("ul", { class: "reconcile" }, rep.sentences.map((x) => h("li", null, x))));

  R.pages.runs = {
    poll: true,
    load: () => R.get("runs"),
    render(runs) {
      if (!runs.length) return R.card("Runs", h("p", { class: "muted" }, "The ledger holds no runs yet. Start one with `ratchet evolve PROJECT`."));
      return R.card("Runs", R.table(["run", "kind", "status", "project", "round", "dev (seed → best)", "holdout (seed → best)", "budget", "updated"],
        runs.map((r) => [R.runLink(r.id), r.kind, R.badge(r.status), r.project, r.round ?? "–",
          change(r.seed_dev, r.best_dev), change(r.seed_holdout, r.best_holdout), R.budgetBars(r.budget), R.time(r.updated_at)]), "runs"));
    },
  };

  R.pages.run = {
    poll: true,
    load: (route) => R.get("run/" + encodeURIComponent(route.arg)),
    render(d) {
      const run = d.run, s = run.summary || {};
      const best = d.candidates.find((c) => c.id === s.best_candidate);
      const head = h("div", { class: "pagehead" },
        h("h1", null, run.kind + " run ", h("span", { class: "mono" }, run.id), " ", R.badge(run.status)),
        h("div", { class: "muted" }, run.project + " · started " + R.time(run.created_at) + " · updated " + R.time(run.updated_at)),
        h("div", { class: "links" }, R.link("#/trajectories" + R.qs({ run: run.id }), "trajectories"), " · ",
          R.link("#/memory" + R.qs({ run: run.id }), "lessons")));
      const rep = d.report, paired = (split) => reportRow(rep, split);
      const shown = (split, a, b) => (paired(split) ? change(paired(split).seed.mean, paired(split).best.mean) : change(a, b));
      const sub = (split, rest) => h("span", null, paired(split) ? h("span", { class: "paired" }, pairedSub(paired(split))) : null,
        paired(split) && rest ? " · " : null, rest);
      const test = paired("test") ? shown("test") : d.test ? R.fmt(d.test.seed) + " → " + R.fmt(d.test.best) : "sealed";
      const stats = h("div", { class: "stats" },
        stat("round", String(s.round ?? d.candidates.length)),
        stat("dev score", shown("dev", s.seed_dev, s.best_dev), sub("dev", best ? h("span", null, "best ", R.candLink(best.id)) : "seed is best")),
        stat("holdout score", shown("holdout", s.seed_holdout, s.best_holdout), sub("holdout", null)),
        stat("sealed test", test, sub("test", "unsealed " + d.unseals + "×")),
        stat("rollouts", R.int(s.rollouts ?? d.rollouts)),
        stat("tokens", R.int(s.tokens)));
      const pending = d.pending.length ? h("div", { class: "banner" }, "Waiting for approval: ",
        d.pending.map((id) => R.candLink(id)), R.LIVE ? [" — ", R.link("#/approvals", "open the approval queue")] : null) : null;
      const candRows = d.candidates.map((c) => [String(c.round), R.candLink(c.id), R.badge(c.status), R.proposerCell(c),
        h("span", { class: "summary" }, c.summary), R.signed(c.dev_diff), R.ci(c.dev_ci[0], c.dev_ci[1]) + (R.isNum(c.dev_ci_level) ? " " + R.pct(c.dev_ci_level, 0) : ""), R.fmt(c.dev_p, 4),
        R.signed(c.holdout_diff), c.holdout_confirmed === true ? "yes" : c.holdout_confirmed === false ? "no" : "–",
        R.int((c.cost || {}).rollouts), h("span", { class: "reason" }, c.reason)]);
      const evalRows = d.evals.map((e) => [R.link("#/trajectories" + R.qs({ run: run.id, split: e.split }), e.split),
        e.candidate_id ? R.candLink(e.candidate_id) : "seed", R.int(e.n_tasks), R.int(e.epochs),
        R.fmt(e.mean) + (R.isNum(e.se) ? " ± " + R.fmt(e.se) : ""), R.int(e.tokens), R.badge(e.status)]);
      return h("div", null, head, pending, stats, rep ? reportCard(rep) : null,
        h("div", { class: "cols" },
          R.card("Score over rounds", h("p", { class: "hint" }, "Lines: the kept harness after each round with its 95% interval; markers: each candidate (click one to open it)."),
            R.scoreChart(d.series)),
          R.card("Paired effect per round", h("p", { class: "hint" }, "The decision's interval for candidate − parent on the same tasks and seeds (its lower end is the one-sided bound the test uses); the dot is the mean."),
            R.effectChart(d.candidates))),
        h("div", { class: "cols" },
          R.card("Budget and cost", R.budgetBars(d.budget), R.costChart(d.cost, d.budget)),
          R.card("Lineage", R.lineageTree(d.lineage))),
        R.card("Candidates", d.candidates.length ? R.table(["round", "candidate", "status", "proposer", "change", "dev Δ", "interval", "p",
          "holdout Δ", "confirmed", "rollouts", "reason"], candRows, "cands") : h("p", { class: "muted" }, "No candidates yet.")),
        d.evals.length ? R.card("Evaluations", R.table(["split", "candidate", "tasks", "epochs", "mean ± se", "tokens", "status"], evalRows)) : null,
        R.card("Audit trail", d.events.length ? R.table(["time", "event", "data"], d.events.slice().reverse().map((e) =>
          [R.time(e.created_at), R.badge(e.kind), h("code", null, JSON.stringify(e.data))])) : h("p", { class: "muted" }, "No events.")));
    },
  };

  // A proposer that failed before another answered (mix), or the round's only one: named, with why and its tokens.
  const failureText = (f) => f.proposer + " failed (" + f.attempts + " attempt" + (f.attempts === 1 ? "" : "s") +
    (R.isNum(f.tokens) ? ", " + R.int(f.tokens) + " tokens" : "") + "): " + f.reason;
  R.proposerCell = (c) => ((c.proposer_failures || []).length
    ? h("span", { title: c.proposer_failures.map(failureText).join("\n") }, c.proposer + " ",
      h("span", { class: "failed-first" }, "(" + c.proposer_failures.map((f) => f.proposer + " failed").join(", ") + ")"))
    : c.proposer);
  const failuresCard = (list) => (list && list.length ? R.card("Proposer failures",
    h("p", { class: "hint" }, "Proposers that produced nothing usable in this round, in the order they were asked."),
    h("ul", null, list.map((f) => h("li", null, failureText(f))))) : null);

  // The agent proposer's tool steps: what it read, edited and probed before it finished (or ran out).
  const agentCard = (w) => (w ? R.card("Agent steps",
    h("p", { class: "muted" }, w.steps.length + " steps · " + w.errors + " errors · " + R.int(w.tokens) + " tokens" +
      (w.episodes ? " · " + w.episodes + " probe episodes" : "")),
    R.table(["step", "tool", "arguments", "result", "tokens"], w.steps.map((s) => [s.step, s.tool || "(malformed)",
      h("code", null, Object.entries(s.args || {}).map(([k, v]) => k + "=" + v).join(", ")),
      s.error ? h("span", { class: "failed-first" }, "ERROR " + s.error) : (s.result || ""), R.int(s.tokens)]), "agent-steps")) : null);

  const textBlock = (label, text) => (text ? h("div", { class: "field" }, h("div", { class: "label" }, label), h("p", { class: "prose" }, text)) : null);

  R.pages.candidate = {
    poll: true,
    load: (route) => R.get("candidate/" + encodeURIComponent(route.arg)),
    render(d, route, rerender) {
      const c = d.candidate, dec = d.decision;
      const head = h("div", { class: "pagehead" },
        h("h1", null, "Round " + c.round + " · ", h("span", { class: "mono" }, c.id), " ", R.badge(c.status)),
        h("div", { class: "muted" }, "run ", R.runLink(c.run_id), " · proposer " + c.proposer + " · parent ",
          d.parent ? R.candLink(d.parent.id) : "seed", c.commit ? " · commit " + c.commit.slice(0, 12) : "",
          d.children.length ? h("span", null, " · children ", d.children.map((k) => [R.candLink(k.id), " "])) : null),
        h("div", { class: "links" }, R.link("#/trajectories" + R.qs({ run: c.run_id, candidate: c.id }), "trajectories of this candidate")));
      const approval = c.status === "awaiting_approval" ? R.approvalBox(c.id, dec.risky, rerender) : null;
      const verdict = h("div", { class: "verdict o-" + d.outcome }, h("b", null, dec.final || c.status), dec.reason ? " — " + dec.reason : "");
      const reasons = (title, list) => (list.length ? h("div", { class: "field" }, h("div", { class: "label" }, title),
        h("ul", null, list.map((x) => h("li", null, x)))) : null);
      const sig = d.signals, keys = [...new Set(Object.keys(sig.parent).concat(Object.keys(sig.candidate)))];
      const lesson = d.lesson ? h("div", null, h("p", { class: "prose" }, d.lesson.text),
        d.lesson.data && d.lesson.data.next_step && !d.lesson.text.includes(d.lesson.data.next_step) ? h("p", null, h("b", null, "Next: "), d.lesson.data.next_step) : null)
        : h("p", { class: "muted" }, "No lesson recorded for this round yet.");
      const cost = c.cost || {};
      return h("div", null, head, approval, failuresCard(d.proposer_failures), agentCard(d.agent_work),
        R.card("Change", textBlock("summary", c.summary), textBlock("rationale", c.rationale), textBlock("hypothesis", c.hypothesis)),
        R.card("Diff", R.diffView(c.diff)),
        R.card("Decision", verdict, R.decisionTable(dec), reasons("guard", dec.guard), reasons("risky", dec.risky),
          h("p", { class: "muted" }, "cost: " + R.int(cost.rollouts) + " rollouts · " + R.int(cost.tokens) + " tokens · " + R.fmt(cost.seconds, 1) + " s")),
        h("div", { class: "cols" },
          R.card("Per-task deltas", R.perTaskChart(dec.per_task),
            h("details", null, h("summary", null, dec.per_task.length + " tasks"),
              R.table(["task", "candidate − parent"], dec.per_task.map((r) => [h("span", { class: "mono" }, r.task), R.signed(r.diff)])))),
          R.card("Failure signals", keys.length ? R.table(["signal", "parent", "candidate"],
            keys.map((k) => [R.badge(k), R.int(sig.parent[k] || 0), R.int(sig.candidate[k] || 0)])) : h("p", { class: "muted" }, "No rollouts recorded."))),
        R.card("Lesson", lesson),
        d.events.length ? R.card("Events", R.table(["time", "event", "data"], d.events.map((e) =>
          [R.time(e.created_at), R.badge(e.kind), h("code", null, JSON.stringify(e.data))]))) : null);
    },
  };
})(window.R = window.R || {});
