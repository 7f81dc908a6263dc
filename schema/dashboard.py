"""The live dashboard at ``/dashboard``: a static page that is a client of the GraphQL API.

The page holds no state on the server. It asks for a token (kept in the browser's
``sessionStorage``, never in a URL or a cookie), reads the tenant's networks over HTTP and
follows every change through a graphql-ws subscription (``networkChanged``), reconnecting
after a lost connection. Its own script and style live next to this module in ``web/``; the
graphql-ws client is the npm package's UMD build, served from ``node_modules`` like GraphiQL's
assets (schema/graphiql.py), so nothing comes from a CDN and no build step is needed.

A strict Content-Security-Policy goes with the page: scripts, styles and connections only
from QaaS's own origin, no inline script.
"""

from __future__ import annotations

import html
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

__all__ = ["DASHBOARD_PATH", "dashboard_routes", "home_page"]

DASHBOARD_PATH = "/dashboard"
_WEB = Path(__file__).resolve().parent / "web"
_OWN_ASSETS = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_HEADERS = {
    "Content-Security-Policy": _CSP,
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


def dashboard_html(graphql_path: str, graphql_ws_url: str) -> str:
    """The page: the sign-in form and an empty dashboard the script fills in."""
    base = f"{DASHBOARD_PATH}/assets"
    return f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>QaaS dashboard</title>
  <link rel="stylesheet" href="{base}/dashboard.css">
</head>
<body data-graphql="{html.escape(graphql_path, quote=True)}">
  <header class="bar">
    <h1>QaaS dashboard</h1>
    <p id="who" class="who"></p>
    <p id="conn" class="conn" role="status" aria-live="polite"></p>
    <button type="button" id="signout" hidden>Sign out</button>
  </header>
  <main>
    <p id="alert" class="alert" role="alert" hidden></p>
    <form id="signin" class="card signin" method="post">
      <h2>Sign in</h2>
      <label for="token">API token</label>
      <input id="token" name="token" type="password" autocomplete="off" required
             spellcheck="false" placeholder="qaas_…">
      <p class="hint">A token comes from <code>qaas token create</code> (or the banner
      <code>./dev serve</code> prints once). It stays in this tab only.</p>
      <button type="submit">Sign in</button>
    </form>
    <div id="app" hidden>
      <section class="card actions" aria-label="New network">
        <form id="create" class="row">
          <h2>Create a network</h2>
          <label>Name <input name="name" required autocomplete="off"
                 pattern="[a-z]([-a-z0-9]*[a-z0-9])?" title="lower-case letters, digits, -"></label>
          <label>Consensus <select name="consensus"><option>RAFT</option><option>IBFT</option>
          </select></label>
          <button type="submit">Create</button>
          <p class="error" role="alert"></p>
        </form>
        <form id="join" class="row">
          <h2>Join a remote network</h2>
          <label>Name <input name="name" required autocomplete="off"></label>
          <label>Coordinator IP <input name="coordinatorIp" required inputmode="decimal"
                 autocomplete="off"></label>
          <label>Consensus <select name="consensus"><option>RAFT</option><option>IBFT</option>
          </select></label>
          <label>Node name <input name="nodeName" value="peer" required autocomplete="off">
          </label>
          <button type="submit">Join</button>
          <p class="error" role="alert"></p>
        </form>
      </section>
      <h2 id="networks-title">Networks <span id="count"></span></h2>
      <p id="empty" class="muted">No networks yet.</p>
      <div id="networks" aria-labelledby="networks-title"></div>
    </div>
  </main>
  <script src="{html.escape(graphql_ws_url, quote=True)}"></script>
  <script src="{base}/dashboard.js"></script>
</body>
</html>
"""


def home_page(graphql_path: str) -> str:
    """What ``/`` shows: where the dashboard and GraphiQL are."""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>QaaS</title>
<link rel="stylesheet" href="{DASHBOARD_PATH}/assets/dashboard.css"></head>
<body><main class="home"><h1>QaaS</h1><ul>
<li><a href="{DASHBOARD_PATH}">The dashboard</a>: your networks and nodes, live</li>
<li><a href="{html.escape(graphql_path, quote=True)}">GraphiQL</a>: the GraphQL API</li>
</ul></main></body></html>
"""


def dashboard_routes(graphql_path: str, graphql_ws_url: str) -> list[Route]:
    """``/`` (a page of links), ``/dashboard`` and the dashboard's own two assets."""
    page = dashboard_html(graphql_path, graphql_ws_url)
    home = home_page(graphql_path)

    async def serve_page(_: Request) -> Response:
        return HTMLResponse(page, headers=_HEADERS)

    async def serve_home(_: Request) -> Response:
        return HTMLResponse(home, headers=_HEADERS)

    async def serve_asset(request: Request) -> Response:
        name = request.path_params["name"]
        media_type = _OWN_ASSETS.get(name)
        if media_type is None:  # looked up, never joined onto a path
            return PlainTextResponse("Not Found\n", status_code=404)
        headers = {"Cache-Control": "no-cache"}  # small, and changes with the code
        return FileResponse(_WEB / name, media_type=media_type, headers=headers)

    return [
        Route("/", serve_home, methods=["GET", "HEAD"]),
        Route(DASHBOARD_PATH, serve_page, methods=["GET", "HEAD"]),
        Route(f"{DASHBOARD_PATH}/assets/{{name}}", serve_asset, methods=["GET", "HEAD"]),
    ]
