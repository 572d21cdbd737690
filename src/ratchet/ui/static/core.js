/* ratchet dashboard core: DOM helper, formatting, data source (live API or embedded report data), token. */
(function (R) {
  "use strict";

  const boot = JSON.parse(document.getElementById("ratchet-boot").textContent);
  R.boot = boot;
  R.LIVE = boot.mode === "live";
  R.POLL_MS = boot.poll_ms || 2500;
  R.charts = window.ratchetCharts = {};
  R.afterMount = [];

  // Build elements without innerHTML: every string from the ledger (model output, diffs) lands as text.
  R.h = function (tag, attrs, ...kids) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else if (k === "class") el.className = v;
      else if (k === "style") el.setAttribute("style", v);
      else el.setAttribute(k, v === true ? "" : v);
    }
    for (const kid of kids.flat(Infinity)) {
      if (kid === null || kid === undefined || kid === false) continue;
      el.appendChild(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    }
    return el;
  };
  const h = R.h;

  R.isNum = (x) => typeof x === "number" && isFinite(x);
  R.fmt = (x, d = 3) => (R.isNum(x) ? x.toFixed(d) : "–");
  R.pct = (x, d = 1) => (R.isNum(x) ? (100 * x).toFixed(d) + "%" : "–");
  R.signed = (x, d = 3) => (R.isNum(x) ? (x >= 0 ? "+" : "") + x.toFixed(d) : "–");
  R.ci = (lo, hi, d = 3) => (R.isNum(lo) && R.isNum(hi) ? "[" + R.signed(lo, d) + ", " + R.signed(hi, d) + "]" : "–");
  R.int = (x) => (R.isNum(x) ? Math.round(x).toLocaleString("en-US") : "–");
  R.time = (t) => (R.isNum(t) ? new Date(t * 1000).toISOString().replace("T", " ").slice(0, 19) + "Z" : "–");
  // both ends: the loop names candidates "<run id>-r007", so the head alone is the same for a whole run
  R.short = (id) => (id ? (id.length > 24 ? id.slice(0, 11) + "…" + id.slice(-12) : id) : "–");
  R.link = (href, text, cls) => h("a", { href: href, class: cls }, text);
  R.candLink = (id) => (id ? h("a", { href: "#/candidate/" + encodeURIComponent(id), class: "mono", title: id }, R.short(id)) : "–");
  R.runLink = (id) => (id ? R.link("#/run/" + encodeURIComponent(id), id, "mono") : "–");

  R.badge = function (status) {
    const s = String(status || "unknown");
    return h("span", { class: "badge b-" + s.replace(/[^a-z_]/gi, "") }, s.replace(/_/g, " "));
  };

  R.card = (title, ...body) => h("section", { class: "card" }, title ? h("h2", null, title) : null, ...body);

  R.table = function (headers, rows, cls) {
    return h("table", { class: "grid " + (cls || "") },
      h("thead", null, h("tr", null, headers.map((x) => h("th", null, x)))),
      h("tbody", null, rows.map((r) => h("tr", null, r.map((c) => h("td", null, c))))));
  };

  R.qs = function (params) {
    const p = new URLSearchParams();
    for (const [k, v] of Object.entries(params || {})) if (v !== undefined && v !== null && v !== "") p.set(k, v);
    const s = p.toString();
    return s ? "?" + s : "";
  };

  // -- data: the live API, or the data a report carries ------------------------------------------------
  function liveGet(path, params) {
    return fetch("api/" + path + R.qs(params), { cache: "no-store" }).then((r) => {
      if (!r.ok) return r.text().then((t) => { throw new Error(r.status + " " + t); });
      return r.json();
    });
  }

  function staticGet(path, params) {
    const d = boot.data;
    const [head, ...rest] = path.split("/");
    const key = decodeURIComponent(rest.join("/"));
    let out;
    if (head === "run" || head === "candidate") out = (d[head] || {})[key];
    else if (head === "trajectories") out = R.filterTrajectories(d.trajectories || [], params || {});
    else out = d[head];
    if (out === undefined) return Promise.reject(new Error("not in this report: " + path));
    return Promise.resolve(out);
  }

  // The same filtering the server does, for a report's embedded rollouts.
  R.filterTrajectories = function (all, p) {
    let base = all;
    if (p.candidate) base = base.filter((t) => t.candidate === p.candidate);
    const facets = { split: {}, signal: {} };
    for (const t of base) {
      facets.split[t.split] = (facets.split[t.split] || 0) + 1;
      facets.signal[t.signal] = (facets.signal[t.signal] || 0) + 1;
    }
    const rows = base.filter((t) => (!p.split || t.split === p.split) && (!p.signal || t.signal === p.signal));
    const offset = +p.offset || 0, limit = +p.limit || 50;
    return { total: rows.length, offset: offset, limit: limit, items: rows.slice(offset, offset + limit), facets: facets };
  };

  R.get = R.LIVE ? liveGet : staticGet;

  // -- the approval token: given once in the URL (?token=...) by `ratchet ui`, kept for the tab ----------
  (function takeTokenFromUrl() {
    const url = new URL(window.location.href);
    const token = url.searchParams.get("token");
    if (token) {
      sessionStorage.setItem("ratchet-token", token);
      url.searchParams.delete("token");
      history.replaceState(null, "", url.pathname + url.search + url.hash);
    }
  })();
  R.token = () => sessionStorage.getItem("ratchet-token") || "";
  R.setToken = (t) => sessionStorage.setItem("ratchet-token", t.trim());

  R.post = function (path) {
    return fetch("api/" + path, { method: "POST", headers: { "X-Ratchet-Token": R.token() } }).then((r) =>
      r.json().catch(() => ({})).then((body) => {
        if (!r.ok) throw new Error(body.detail || r.status + " " + r.statusText);
        return body;
      }));
  };
})(window.R = window.R || {});
