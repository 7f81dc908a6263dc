"""GraphiQL served entirely from this process.

Strawberry's built-in GraphiQL page pulls React and GraphiQL from a public CDN, which
leaves a blank page in the offline private clouds QaaS runs in. Instead the scripts come
from the npm packages pinned in the project's ``package.json`` (installed with
``npm ci``) and are served by the same app that serves ``/graphql``.

The page opens on a query that works for any token (``DEFAULT_QUERY``: who you are, and your
networks with their nodes), its Headers tab open and holding ``DEFAULT_HEADERS`` (the token
goes after ``Bearer``), and a line above the editor saying where tokens come from.
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Route

__all__ = [
    "ASSETS",
    "ASSETS_ENV_VAR",
    "DEFAULT_HEADERS",
    "DEFAULT_QUERY",
    "TOKEN_HINT",
    "assets_dir",
    "assets_route",
    "graphiql_html",
]

DEFAULT_QUERY = """# Put your token after "Bearer" in the Headers tab below, then press Run.
query Overview {
  viewer { role tenant { name namespace } }
  networks(first: 20) {
    totalCount
    edges {
      node {
        id name status consensus coordinatorIp
        nodes { edges { node { id name role status statusReason ip } } }
      }
    }
  }
}
"""

DEFAULT_HEADERS = '{"Authorization": "Bearer "}'

TOKEN_HINT = (
    "Every request needs an API token in the Headers tab. <code>./dev serve</code> prints an "
    "ADMIN token for the tenant <code>local</code> on its first start; make more with "
    "<code>qaas token create --tenant NAME --role admin</code> (or the "
    "<code>tokenCreate</code> mutation)."
)
"""The line shown above GraphiQL (HTML)."""

ASSETS_ENV_VAR = "QAAS_WEB_ASSETS"
"""Overrides where ``node_modules`` lives, e.g. in an image that installs it elsewhere."""

_JS = "text/javascript; charset=utf-8"
_CSS = "text/css; charset=utf-8"

ASSETS: dict[str, tuple[str, str]] = {
    "react.production.min.js": ("react/umd/react.production.min.js", _JS),
    "react-dom.production.min.js": ("react-dom/umd/react-dom.production.min.js", _JS),
    "graphql-ws.min.js": ("graphql-ws/umd/graphql-ws.min.js", _JS),
    "graphiql.min.js": ("graphiql/graphiql.min.js", _JS),
    "graphiql.min.css": ("graphiql/graphiql.min.css", _CSS),
}
"""Public file name -> (path inside ``node_modules``, media type). Nothing else is served."""

# The URLs are not versioned, so an upgrade must reach browsers within a reasonable
# time: cache for a week, and let FileResponse's ETag/Last-Modified do the rest.
_CACHE_CONTROL = "public, max-age=604800"

_INSTALL_HINT = (
    "GraphiQL assets are not installed: run `npm ci` in the QaaS project root "
    f"(or set {ASSETS_ENV_VAR} to an existing node_modules directory).\n"
)


def assets_dir() -> Path:
    """Return the ``node_modules`` directory holding the GraphiQL packages.

    ``$QAAS_WEB_ASSETS`` (the ``node_modules`` directory itself) wins; otherwise the
    one next to ``package.json`` at the project root, the parent of this package.
    """
    override = os.environ.get(ASSETS_ENV_VAR)
    if override:
        return Path(override)
    return Path(__file__).resolve().parent.parent / "node_modules"


def _script_string(value: str) -> str:
    """Encode ``value`` as a JavaScript string literal safe inside a <script> element."""
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e")


def graphiql_html(graphql_path: str, assets_path: str) -> str:
    """Return the GraphiQL page, with every script and style loaded from ``assets_path``.

    Queries go over HTTP to ``graphql_path`` on the page's own origin; subscriptions go
    over graphql-ws to the same path, with ws:// or wss:// matching the page. The JSON in
    GraphiQL's headers editor is sent as HTTP headers and, for subscriptions, as the
    WebSocket connection params (browsers cannot set headers on a WebSocket).
    """
    base = assets_path.rstrip("/")

    def asset(name: str) -> str:
        if name not in ASSETS:
            raise KeyError(name)
        return html.escape(f"{base}/{name}", quote=True)

    return f"""<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>QaaS GraphiQL</title>
    <link rel="stylesheet" href="{asset("graphiql.min.css")}">
    <style>
      html, body {{ height: 100%; margin: 0; }}
      body {{ display: flex; flex-direction: column; }}
      #token-hint {{ margin: 0; padding: 6px 12px; font: 14px/1.4 system-ui, sans-serif;
                    background: #fdf6e3; border-bottom: 1px solid #ddd; }}
      #graphiql {{ flex: 1; min-height: 0; }}
    </style>
  </head>
  <body>
    <p id="token-hint">{TOKEN_HINT}</p>
    <div id="graphiql">Loading GraphiQL…</div>
    <script src="{asset("react.production.min.js")}"></script>
    <script src="{asset("react-dom.production.min.js")}"></script>
    <script src="{asset("graphql-ws.min.js")}"></script>
    <script src="{asset("graphiql.min.js")}"></script>
    <script>
      (function () {{
        "use strict";
        var graphqlPath = {_script_string(graphql_path)};
        var httpUrl = new URL(graphqlPath, window.location.href);
        var wsUrl = new URL(httpUrl.href);
        wsUrl.protocol = httpUrl.protocol === "https:" ? "wss:" : "ws:";

        // Headers from the most recent request; read when a WebSocket connects. The
        // lazy client closes its socket once no subscription is running, so a changed
        // Authorization header takes effect on the next subscription.
        var lastHeaders = {{}};
        var wsClient = graphqlWs.createClient({{
          url: wsUrl.href,
          lazy: true,
          connectionParams: function () {{ return lastHeaders; }}
        }});
        var fetchGraphQL = GraphiQL.createFetcher({{
          url: httpUrl.href,
          subscriptionUrl: wsUrl.href,
          wsClient: wsClient
        }});
        function fetcher(params, options) {{
          lastHeaders = (options && options.headers) || {{}};
          return fetchGraphQL(params, options);
        }}

        ReactDOM.createRoot(document.getElementById("graphiql")).render(
          React.createElement(GraphiQL, {{
            fetcher: fetcher,
            defaultQuery: {_script_string(DEFAULT_QUERY)},
            defaultHeaders: {_script_string(DEFAULT_HEADERS)},
            defaultEditorToolsVisibility: "headers",
            isHeadersEditorEnabled: true,
            shouldPersistHeaders: false
          }})
        );
      }})();
    </script>
  </body>
</html>
"""


def assets_route(path_prefix: str) -> Route:
    """Route serving exactly the files named in ``ASSETS`` under ``path_prefix``.

    The file name is looked up in ``ASSETS`` and never joined onto a path itself, so
    nothing else under ``node_modules`` (or beyond it) can be reached.
    """

    async def serve_asset(request: Request) -> Response:
        entry = ASSETS.get(request.path_params["name"])
        if entry is None:
            return PlainTextResponse("Not Found\n", status_code=404)
        relative_path, media_type = entry
        path = assets_dir() / relative_path
        if not path.is_file():
            return PlainTextResponse(_INSTALL_HINT, status_code=503)
        return FileResponse(path, media_type=media_type, headers={"Cache-Control": _CACHE_CONTROL})

    return Route(f"{path_prefix.rstrip('/')}/{{name}}", serve_asset, methods=["GET", "HEAD"])
