/* ratchet dashboard widgets: diff, lineage tree, decision table, budget bars, trajectory, approval box. */
(function (R) {
  "use strict";
  const h = R.h;

  // A unified diff as a table with old/new line numbers; hunk line counts decide where a hunk ends,
  // so a removed line that starts with "-- " is never mistaken for a file header.
  R.diffView = function (text) {
    if (!text || !text.trim()) return h("p", { class: "muted" }, "No diff recorded.");
    const rows = [];
    let oldNo = 0, newNo = 0, oldLeft = 0, newLeft = 0;
    const row = (cls, a, b, line) =>
      rows.push(h("tr", { class: "d-" + cls }, h("td", { class: "ln" }, a), h("td", { class: "ln" }, b),
        h("td", { class: "code" }, line)));
    for (const line of text.replace(/\n$/, "").split("\n")) {
      const inHunk = oldLeft > 0 || newLeft > 0;
      const hunk = /^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@/.exec(line);
      if (hunk) {
        oldNo = +hunk[1]; newNo = +hunk[3];
        oldLeft = hunk[2] === undefined ? 1 : +hunk[2];
        newLeft = hunk[4] === undefined ? 1 : +hunk[4];
        row("hunk", "", "", line);
      } else if (!inHunk) {
        row(line.startsWith("diff ") || line.startsWith("+++ ") || line.startsWith("--- ") ? "file" : "meta", "", "", line);
      } else if (line.startsWith("+")) {
        row("add", "", newNo++, line); newLeft--;
      } else if (line.startsWith("-")) {
        row("del", oldNo++, "", line); oldLeft--;
      } else if (line.startsWith("\\")) {
        row("meta", "", "", line);
      } else {
        row("ctx", oldNo++, newNo++, line); oldLeft--; newLeft--;
      }
    }
    const adds = rows.filter((r) => r.className === "d-add").length;
    const dels = rows.filter((r) => r.className === "d-del").length;
    return h("div", { class: "diffwrap" },
      h("div", { class: "diffstat" }, h("span", { class: "plus" }, "+" + adds), " ", h("span", { class: "minus" }, "−" + dels)),
      h("table", { class: "diff", id: "diff" }, h("tbody", null, rows)));
  };

  R.lineageTree = function (roots) {
    if (!roots || !roots.length) return h("p", { class: "muted" }, "No candidates yet.");
    const node = (n) => h("li", { class: n.best_path ? "on-path" : "" },
      h("span", { class: "node o-" + n.outcome },
        n.id ? R.candLink(n.id) : h("b", null, n.label === "seed" || n.label === "None" ? "seed" : "seed " + R.short(n.label)),
        n.id ? h("span", { class: "muted" }, " r" + n.round + " ") : null,
        n.id ? R.badge(n.status) : null,
        n.summary && n.id ? h("span", { class: "node-summary" }, n.summary) : null),
      n.children && n.children.length ? h("ul", null, n.children.map(node)) : null);
    return h("ul", { class: "tree" }, roots.map(node));
  };

  const STAT_COLS = ["test", "tasks", "parent", "candidate", "Δ", "interval of Δ", "p", "α", "result", "reason"];
  const level = (x) => (R.isNum(x) ? " " + R.pct(x, 0) : "");
  R.decisionTable = function (dec) {
    const rows = [];
    for (const [name, s] of [["dev", dec.dev], ["first slice", dec.slice]]) {
      if (!s) continue;
      rows.push([name, R.int(s.n_tasks), R.fmt(s.mean_parent), R.fmt(s.mean_cand), R.signed(s.mean_diff),
        R.ci(s.ci_low, s.ci_high) + level(s.ci_level), R.fmt(s.p_value, 4), R.fmt(s.alpha, 3),
        s.accepted ? R.badge("passed") : R.badge("failed"), s.reason || ""]);
    }
    const ho = dec.holdout;
    if (ho) {
      rows.push(["holdout", "", R.fmt(ho.mean_parent), R.fmt(ho.mean_cand), R.signed(ho.holdout_diff),
        R.ci(ho.ci_low, ho.ci_high), R.fmt(ho.p_value, 4), "",
        ho.confirmed ? R.badge("confirmed") : R.badge("not_confirmed"),
        (ho.reason || "") + (R.isNum(ho.budget_left) ? " (holdout budget left: " + ho.budget_left + ")" : "")]);
    }
    if (!rows.length) return h("p", { class: "muted" }, "Not evaluated.");
    return R.table(STAT_COLS, rows, "dstats");
  };

  R.budgetBars = function (budget) {
    if (!budget || !budget.length) return h("p", { class: "muted" }, "No budget recorded.");
    return h("div", { class: "budget" }, budget.map((b) => {
      const frac = R.isNum(b.fraction) ? Math.min(1, b.fraction) : null;
      return h("div", { class: "brow" },
        h("span", { class: "bname" }, b.name),
        h("span", { class: "bar" }, h("span", { class: "fill" + (frac !== null && frac > 0.9 ? " hot" : ""),
          style: "width:" + (frac === null ? 0 : (100 * frac).toFixed(1)) + "%" })),
        h("span", { class: "bval" }, R.int(b.used) + " / " + (R.isNum(b.max) ? R.int(b.max) : "∞")));
    }));
  };

  const pre = (text, cls) => h("pre", { class: cls || "" }, text);
  const json = (v) => JSON.stringify(v, null, 2);

  function messageView(m, i) {
    if (m && Array.isArray(m.request)) {
      return h("div", { class: "call" },
        h("div", { class: "call-head" }, "model call " + (i + 1), m.cached ? h("span", { class: "badge b-cached" }, "cached") : null,
          m.params ? h("span", { class: "muted mono" }, " " + JSON.stringify(m.params)) : null),
        m.request.map((msg) => h("div", { class: "msg role-" + (msg.role || "x") },
          h("span", { class: "role" }, msg.role || "?"), pre(String(msg.content ?? json(msg))))),
        (m.replies || []).map((r) => h("div", { class: "msg role-reply" }, h("span", { class: "role" }, "reply"),
          pre(typeof r === "string" ? r : json(r)))));
    }
    if (m && m.role) return h("div", { class: "msg role-" + m.role }, h("span", { class: "role" }, m.role), pre(String(m.content ?? "")));
    return pre(json(m));
  }

  R.trajectoryView = function (t) {
    const d = t.data || {};
    const field = (label, value, cls) => (value === null || value === undefined || value === "" ? null :
      h("div", { class: "field" }, h("div", { class: "label" }, label), pre(String(value), cls)));
    return h("details", { class: "traj" },
      h("summary", null,
        h("span", { class: "mono" }, t.task_id), h("span", { class: "muted" }, " epoch " + t.epoch + " · " + t.split + " · "),
        t.candidate ? h("span", { class: "mono muted" }, R.short(t.candidate) + " · ") : h("span", { class: "muted" }, "seed · "),
        h("span", { class: "score" }, "score " + R.fmt(t.score, 2)), " ", R.badge(t.signal),
        h("span", { class: "muted" }, " · " + (d.steps ?? "?") + (d.steps === 1 ? " step · " : " steps · ") + R.int(d.tokens) + " tokens · " + R.fmt(d.seconds, 1) + " s")),
      h("div", { class: "traj-body" },
        field("output", d.output), field("feedback", d.feedback), field("error", d.error, "err"),
        (d.messages || []).length ? h("div", { class: "field" }, h("div", { class: "label" }, "messages"), d.messages.map(messageView)) : null,
        (d.tool_calls || []).length ? h("div", { class: "field" }, h("div", { class: "label" }, "tool calls"),
          d.tool_calls.map((c) => pre(json(c), "tool"))) : null,
        field("log", d.log)));
  };

  // Approve / reject for one waiting candidate; `done` re-renders the page after a decision.
  R.approvalBox = function (cand, risky, done) {
    const msg = h("span", { class: "approval-msg" });
    if (!R.LIVE) return h("div", { class: "approval" }, R.badge("awaiting_approval"), " decided in the live dashboard (`ratchet ui`).");
    const act = (action) => () => {
      msg.textContent = "…";
      R.post("candidate/" + encodeURIComponent(cand) + "/" + action)
        .then((r) => { msg.textContent = "recorded: " + r.decision; done && done(); })
        .catch((e) => { msg.textContent = e.message; msg.className = "approval-msg err"; });
    };
    const tokenInput = h("input", { type: "password", placeholder: "token printed by `ratchet ui`", class: "token",
      onchange: (e) => R.setToken(e.target.value) });
    const writable = R.meta && R.meta.writable;
    return h("div", { class: "approval", "data-candidate": cand },
      // approve = "always" gates every change, so a waiting candidate need not be risky
      h("div", null, h("b", null, (risky || []).length ? "Risky change: waiting for a person. "
        : "Waiting for a person (the approval gate holds every change)."), (risky || []).join("; ")),
      writable ? h("div", { class: "actions" },
        h("button", { class: "btn approve", id: "approve-" + cand, onclick: act("approve") }, "Approve"),
        h("button", { class: "btn reject", id: "reject-" + cand, onclick: act("reject") }, "Reject"),
        R.token() ? null : tokenInput, msg)
        : h("div", { class: "muted" }, "Read-only dashboard: restart `ratchet ui` without --read-only to decide here."));
  };
})(window.R = window.R || {});
