"""GraphiQL must work with no internet access: every script and style is ours."""

from __future__ import annotations

from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route
from starlette.types import Message, Scope

from schema.graphiql import ASSETS, ASSETS_ENV_VAR, assets_dir, assets_route, graphiql_html

ASSETS_PATH = "/graphiql-assets"


class _References(HTMLParser):
    """Collects every src/href attribute of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls.extend(value for name, value in attrs if name in {"src", "href"} and value)


def _references(page: str) -> list[str]:
    parser = _References()
    parser.feed(page)
    parser.close()
    return parser.urls


async def _graphiql_page(request: Request) -> HTMLResponse:
    return HTMLResponse(graphiql_html("/graphql", ASSETS_PATH))


@pytest.fixture
def app() -> Starlette:
    return Starlette(routes=[assets_route(ASSETS_PATH), Route("/graphql", _graphiql_page)])


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    # httpx's ASGI transport rather than starlette.testclient: with Starlette 1.x that
    # module warns (an error here) unless the separate httpx2 package is installed.
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://qaas.test") as c:
        yield c


@pytest.fixture
async def page(client: httpx.AsyncClient) -> str:
    response = await client.get("/graphql")
    assert response.status_code == 200
    return response.text


@pytest.fixture
def installed() -> None:
    if not (assets_dir() / "graphiql" / "package.json").is_file():
        pytest.fail(
            f"GraphiQL assets missing from {assets_dir()}: run `npm ci` in the project root"
        )


def test_page_loads_nothing_from_another_origin(page: str) -> None:
    urls = _references(page)
    assert urls, "the page references no scripts or styles at all"
    for url in urls:
        assert url.startswith(f"{ASSETS_PATH}/"), url
        assert not url.startswith("//"), url
    assert "://" not in page
    for cdn in ("unpkg", "jsdelivr", "cdnjs", "esm.sh"):
        assert cdn not in page


def test_page_loads_every_asset(page: str) -> None:
    names = {url.removeprefix(f"{ASSETS_PATH}/") for url in _references(page)}
    assert names == set(ASSETS)


@pytest.mark.usefixtures("installed")
async def test_every_referenced_asset_is_served(client: httpx.AsyncClient, page: str) -> None:
    for url in _references(page):
        response = await client.get(url)
        assert response.status_code == 200, url
        media_type = response.headers["content-type"].split(";")[0]
        expected = "text/css" if url.endswith(".css") else "text/javascript"
        assert media_type == expected, url
        assert len(response.content) > 5_000, url
        assert "max-age=" in response.headers["cache-control"], url


@pytest.mark.usefixtures("installed")
@pytest.mark.parametrize(
    "path",
    [
        "/graphiql-assets/../package.json",
        "/graphiql-assets/..%2Fpackage.json",
        "/graphiql-assets/%2e%2e%2fpackage.json",
        "/graphiql-assets/..%2F..%2Fpyproject.toml",
        "/graphiql-assets/package.json",
        "/graphiql-assets/graphiql%2Fpackage.json",
        "/graphiql-assets/graphiql/graphiql.min.js",
        "/graphiql-assets/react/umd/react.production.min.js",
        "/graphiql-assets/graphiql.min.js.map",
        "/graphiql-assets/",
    ],
)
async def test_only_listed_files_are_served(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 404
    assert "qaas-web-assets" not in response.text
    assert "[build-system]" not in response.text


@pytest.mark.usefixtures("installed")
@pytest.mark.parametrize(
    "path",
    ["/graphiql-assets/../package.json", "/graphiql-assets/../../pyproject.toml"],
)
async def test_traversal_not_normalised_by_a_client_is_refused(app: Starlette, path: str) -> None:
    # HTTP clients drop "../" segments themselves; send the path to the app untouched.
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [],
        "server": ("qaas.test", 80),
        "client": ("127.0.0.1", 1234),
    }
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    assert sent[0]["status"] == 404
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert b"qaas-web-assets" not in body


async def test_missing_node_modules_says_how_to_install(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(ASSETS_ENV_VAR, str(tmp_path / "node_modules"))
    response = await client.get(f"{ASSETS_PATH}/graphiql.min.js")
    assert response.status_code == 503
    assert "npm ci" in response.text


def test_assets_dir_defaults_to_project_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ASSETS_ENV_VAR, raising=False)
    project_root = Path(__file__).resolve().parents[2]
    assert assets_dir() == project_root / "node_modules"
    assert (project_root / "package.json").is_file()


def test_page_derives_websocket_url_from_location(page: str) -> None:
    assert "graphqlWs.createClient" in page
    assert "window.location" in page
    assert '"wss:"' in page
    assert "isHeadersEditorEnabled: true" in page


def test_paths_are_escaped() -> None:
    page = graphiql_html('/graphql"</script><script>alert(1)//', '/a"b')
    assert "</script><script>alert(1)" not in page
    assert 'href="/a&quot;b/graphiql.min.css"' in page
