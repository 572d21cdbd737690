/* ratchet dashboard: hash router, navigation, live polling. Works the same over the API and inside a report. */
(function (R) {
  "use strict";
  const h = R.h;
  const main = document.getElementById("main");
  let navToken = 0, pollTimer = null, lastSig = null;

  function parseRoute() {
    const raw = window.location.hash.replace(/^#/, "") || "/";
    const [path, query] = raw.split("?");
    const parts = path.split("/").filter(Boolean);
    const q = Object.fromEntries(new URLSearchParams(query || ""));
    let name = parts[0] || (R.LIVE ? "runs" : "run");
    let arg = parts.length > 1 ? decodeURIComponent(parts.slice(1).join("/")) : null;
    if (name === "run" && !arg && !R.LIVE) arg = R.boot.data.meta.run;
    if (!R.pages[name]) name = "notfound";
    return { name: name, arg: arg, query: q, raw: raw };
  }

  R.pages.notfound = { load: () => Promise.resolve(null), render: () => R.card("Not found", h("p", null, "No such page. ", R.link("#/", "Back to the start."))) };

  function drawNav() {
    const m = R.meta || {};
    const items = R.LIVE ? [["#/", "runs"], ["#/trajectories", "trajectories"], ["#/memory", "memory"], ["#/approvals", "approvals"]]
      : [["#/run/" + encodeURIComponent(R.boot.data.meta.run), "run"], ["#/trajectories", "trajectories"], ["#/memory", "memory"]];
    if (m.flywheel) items.push(["#/flywheel", "flywheel"]);
    const nav = document.getElementById("nav");
    nav.replaceChildren(...items.map(([href, label]) => h("a", { href: href, class: "navlink" }, label,
      label === "approvals" && m.pending ? h("span", { class: "count", id: "pending-count" }, String(m.pending)) : null)));
  }

  function stamp(ok, text) {
    const el = document.getElementById("live");
    if (!R.LIVE) { el.textContent = "report · " + R.boot.data.meta.generated_at; return; }
    el.className = "live " + (ok ? "ok" : "down");
    el.textContent = text || (ok ? "live · " + new Date().toLocaleTimeString() : "disconnected");
  }

  // build() renders the page; the charts it declares are drawn once its nodes are in the document
  function mount(build) {
    R.afterMount = [];
    const node = build();
    const pending = R.afterMount;
    Object.values(R.charts).forEach((c) => c.destroy());
    for (const k of Object.keys(R.charts)) delete R.charts[k];
    const y = window.scrollY;
    main.replaceChildren(node);
    // charts need their canvas in the document to size themselves
    pending.splice(0).forEach((f) => f());
    window.scrollTo(0, y);
    document.body.dataset.page = "ready";
  }

  async function refreshMeta() {
    if (!R.LIVE) { R.meta = R.boot.data.meta; return; }
    try { R.meta = await R.get("meta"); } catch (e) { R.meta = R.meta || {}; }
  }

  async function show(route, token, first) {
    const page = R.pages[route.name];
    try {
      await refreshMeta();
      const data = await page.load(route);
      if (token !== navToken) return;
      const sig = JSON.stringify([data, R.meta && R.meta.writable]);
      if (first || sig !== lastSig) {
        lastSig = sig;
        drawNav();
        mount(() => page.render(data, route, () => show(route, token, true)));
      } else drawNav();
      stamp(true);
    } catch (e) {
      if (token !== navToken) return;
      if (first) mount(() => R.card("Could not load this page", h("pre", { class: "err" }, String(e.message || e))));
      stamp(false);
    }
    if (R.LIVE && page.poll && token === navToken) {
      clearTimeout(pollTimer);
      pollTimer = setTimeout(() => show(route, token, false), R.POLL_MS);
    }
  }

  function navigate() {
    clearTimeout(pollTimer);
    document.body.dataset.page = "loading";
    show(parseRoute(), ++navToken, true);
  }

  window.addEventListener("hashchange", navigate);
  navigate();
})(window.R = window.R || {});
