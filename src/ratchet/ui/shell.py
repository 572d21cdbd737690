"""The one HTML page both the live dashboard and the static report use.

Live, it links the assets under /static and boots with {"mode": "live"}; as a report, it inlines the
same CSS and scripts and boots with the data itself, so the report draws the same pages with the same
code and needs no network.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

STYLES = ("app.css",)
# order matters: Chart.js first, then our modules, app.js (the router) last
SCRIPTS = ("chart.umd.min.js", "core.js", "widgets.js", "charts.js", "pages_run.js", "pages_browse.js", "app.js")


def asset_text(name: str) -> str:
    return resources.files("ratchet.ui").joinpath("static", name).read_text(encoding="utf-8")


def json_for_script(value: Any) -> str:
    """JSON that is safe inside <script>: '<' is escaped so no string can close the element."""
    text = json.dumps(value, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _strip_source_map(js: str) -> str:
    # a sourceMappingURL would make devtools fetch a file the report does not carry
    return "\n".join(line for line in js.splitlines() if not line.startswith("//# sourceMappingURL="))


def render_page(boot: dict[str, Any], inline: bool, title: str = "ratchet") -> str:
    if inline:
        head = "\n".join(f"<style>\n{asset_text(n)}\n</style>" for n in STYLES)
        body = "\n".join(f"<script>\n{_strip_source_map(asset_text(n))}\n</script>" for n in SCRIPTS)
    else:
        head = "\n".join(f'<link rel="stylesheet" href="static/{n}">' for n in STYLES)
        body = "\n".join(f'<script src="static/{n}"></script>' for n in SCRIPTS)
    safe_title = title.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>{safe_title}</title>
{head}
</head>
<body>
<header class="topbar"><a class="brand" href="#/">ratchet</a><nav id="nav"></nav><span id="live" class="live"></span></header>
<main id="main"><p class="muted">Loading…</p></main>
<script id="ratchet-boot" type="application/json">{json_for_script(boot)}</script>
{body}
</body>
</html>
"""
