"""GraphiQL, as served, opens on a query that works, headers waiting for a token, and a line
saying where tokens come from."""

from __future__ import annotations

import json
import re

from tests.helpers import GraphQLClient


def _literal(page: str, prop: str) -> str:
    """The JavaScript string literal the page passes to GraphiQL as ``prop``."""
    found = re.search(prop + r': ("(?:[^"\\]|\\.)*")', page)
    assert found is not None, f"no {prop} in the page"
    value: str = json.loads(found.group(1))
    return value


async def test_the_served_page_opens_on_a_query_that_works(api: GraphQLClient) -> None:
    response = await api.http.get("/graphql", headers={"Accept": "text/html"})
    assert response.status_code == 200
    page = response.text
    assert json.loads(_literal(page, "defaultHeaders")) == {"Authorization": "Bearer "}
    assert 'defaultEditorToolsVisibility: "headers"' in page
    hint = re.search(r'<p id="token-hint">(.*?)</p>', page)
    assert hint is not None
    assert "./dev serve" in hint.group(1)
    assert "qaas token create" in hint.group(1)

    query = _literal(page, "defaultQuery")
    created = await api.data(
        'mutation { networkCreate(input: {name: "shown"}) { network { id } } }'
    )
    data = await api.data(query)  # with the token the Headers tab asks for
    assert data["viewer"]["role"] == "ADMIN"
    networks = [edge["node"] for edge in data["networks"]["edges"]]
    assert [n["id"] for n in networks] == [created["networkCreate"]["network"]["id"]]
    assert [e["node"]["name"] for e in networks[0]["nodes"]["edges"]] == ["coordinator"]
