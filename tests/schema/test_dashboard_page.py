"""The dashboard's page and assets as HTTP serves them (the browser test is tests/live/)."""

from __future__ import annotations

import re

import httpx
from starlette.applications import Starlette

from schema.build import ASSETS_PATH, GRAPHQL_PATH
from schema.dashboard import dashboard_routes


def client() -> httpx.AsyncClient:
    app = Starlette(routes=dashboard_routes(GRAPHQL_PATH, f"{ASSETS_PATH}/graphql-ws.min.js"))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://qaas.test")


async def test_root_links_to_the_dashboard_and_graphiql() -> None:
    async with client() as http:
        response = await http.get("/")
    assert response.status_code == 200
    assert 'href="/dashboard"' in response.text
    assert f'href="{GRAPHQL_PATH}"' in response.text


async def test_the_page_asks_for_a_token_and_loads_only_its_own_origin() -> None:
    async with client() as http:
        response = await http.get("/dashboard")
    assert response.status_code == 200
    page = response.text
    assert re.search(r'<input[^>]*name="token"[^>]*type="password"', page)
    assert re.search(r'<label for="token">', page)
    # Every script and style comes from QaaS itself; nothing inline, no CDN.
    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert sources
    assert all(source.startswith("/") for source in sources), sources
    assert "<script>" not in page
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "connect-src 'self'" in policy
    # A form submitted without the script would put the token in a URL: the policy forbids it.
    assert "form-action 'none'" in policy


async def test_its_assets_are_served_and_nothing_else() -> None:
    async with client() as http:
        script = await http.get("/dashboard/assets/dashboard.js")
        style = await http.get("/dashboard/assets/dashboard.css")
        other = await http.get("/dashboard/assets/..%2Fdashboard.py")
        missing = await http.get("/dashboard/assets/app.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert "networkChanged" in script.text
    assert "sessionStorage" in script.text
    assert "localStorage" not in script.text
    assert "document.cookie" not in script.text
    assert style.status_code == 200
    assert style.headers["content-type"].startswith("text/css")
    assert other.status_code == 404
    assert missing.status_code == 404
