"""The dashboard in a real browser: Debian's headless Chromium driven by Playwright, against a
real uvicorn server on the sandbox.

Signs in (a wrong token first), creates a network and sees its coordinator reach RUNNING, adds
and deletes a node, sees a pod change arrive live (and prints how long it took), survives a
server restart, deletes the network. Set QAAS_DASHBOARD_SCREENSHOTS=1 to refresh the README's
screenshots in docs/.
"""

from __future__ import annotations

import os
import shutil
import statistics
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes_asyncio import client
from playwright.async_api import Browser, Dialog, Page, async_playwright, expect

from app.config import Settings
from tests.live.conftest import LiveServer

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DOCS = Path(__file__).resolve().parents[2] / "docs"
MERGE_PATCH = "application/merge-patch+json"
WAIT_MS = 30_000  # liveness bound for the control loop and the browser, not a speed goal

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).is_file(), reason="Chromium is missing: `./dev setup` installs it"
)


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        # Debian's Chromium; `playwright install` (a CDN download) is never needed.
        launched = await playwright.chromium.launch(executable_path=CHROMIUM)
        yield launched
        await launched.close()


async def pod_of(live: LiveServer, node_name: str) -> str:
    query = "{ networks { edges { node { nodes { edges { node { name pod { name } } } } } } } }"
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {live.token}"}) as http:
        body = (await http.post(live.http_url, json={"query": query})).json()
    for network in body["data"]["networks"]["edges"]:
        for node in network["node"]["nodes"]["edges"]:
            if node["node"]["name"] == node_name and node["node"]["pod"]:
                return str(node["node"]["pod"]["name"])
    raise AssertionError(f"no pod for node {node_name}: {body}")


async def bump_restarts(core: client.CoreV1Api, namespace: str, pod: str) -> int:
    """Raise the pod's restartCount by one through pods/status, as a kubelet would."""
    current = await core.read_namespaced_pod_status(pod, namespace, _preload_content=False)
    statuses: list[dict[str, Any]] = (await current.json())["status"]["containerStatuses"]
    statuses[0]["restartCount"] += 1
    patch = {"status": {"containerStatuses": statuses}}
    await core.patch_namespaced_pod_status(pod, namespace, patch, _content_type=MERGE_PATCH)
    return int(statuses[0]["restartCount"])


async def screenshots(page: Page, folder: Path) -> None:
    for name, width, height in (("dashboard", 1280, 860), ("dashboard-phone", 390, 844)):
        await page.set_viewport_size({"width": width, "height": height})
        path = folder / f"{name}.png"
        await page.screenshot(path=str(path), full_page=name == "dashboard-phone")
        assert path.stat().st_size > 10_000  # a page, not a blank image
    await page.set_viewport_size({"width": 1280, "height": 860})


async def test_the_dashboard_follows_a_network_live(
    live: LiveServer,
    browser: Browser,
    settings: Settings,
    kube_api: client.ApiClient,
    namespace: str,
    tmp_path: Path,
) -> None:
    context = await browser.new_context(viewport={"width": 1280, "height": 860})
    page = await context.new_page()
    page.set_default_timeout(WAIT_MS)
    expect.set_options(timeout=WAIT_MS)
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))

    async def accept(dialog: Dialog) -> None:
        await dialog.accept()

    page.on("dialog", accept)
    base = f"http://127.0.0.1:{live.port}"

    # A wrong token is refused in words; the right one shows the live dashboard.
    await page.goto(f"{base}/dashboard")
    await page.get_by_label("API token").fill("qaas_not-a-real-token")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#alert")).to_contain_text("token was not accepted")
    await expect(page.locator("#signin")).to_be_visible()
    await page.get_by_label("API token").fill(live.token)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#conn")).to_have_text("Live")
    assert await page.evaluate("sessionStorage.getItem('qaas.token')") == live.token
    assert live.token not in page.url
    assert not await context.cookies()

    # Create a network: its coordinator comes up without a reload.
    await page.locator("#create").get_by_label("Name").fill("web")
    await page.locator("#create").get_by_role("button", name="Create").click()
    network = page.get_by_role("region", name="Network web")
    await expect(network.locator("li.node[data-status=RUNNING]")).to_have_count(1)

    # A userError is shown in words next to the form.
    await page.locator("#create").get_by_label("Name").fill("web")
    await page.locator("#create").get_by_role("button", name="Create").click()
    await expect(page.locator("#create .error")).not_to_be_empty()

    # Add a node; it appears and runs.
    await network.get_by_label("New node").fill("peer1")
    await network.get_by_role("button", name="Add node").click()
    peer = network.locator("li.node", has_text="peer1")
    await expect(peer).to_have_attribute("data-status", "RUNNING")

    # A pod change reaches the page: time from the PATCH to the DOM showing it.
    core = client.CoreV1Api(kube_api)
    pod = await pod_of(live, "peer1")
    shown = f'li.node[data-id="{await peer.get_attribute("data-id")}"] .pod'
    delays = []
    for _ in range(5):
        started = time.perf_counter()
        restarts = await bump_restarts(core, namespace, pod)
        await page.wait_for_function(
            "([selector, text]) => document.querySelector(selector).textContent.includes(text)",
            arg=[shown, f"{restarts} restart"],
            polling="raf",  # checked on each animation frame (about 16 ms), not on a timer
        )
        delays.append(time.perf_counter() - started)
    print(
        f"\ndashboard: pod status PATCH to DOM, {len(delays)} changes: median "
        f"{statistics.median(delays) * 1000:.0f} ms, max {max(delays) * 1000:.0f} ms"
    )

    await network.locator("li.node").first.get_by_text("Status history").click()
    await screenshots(page, DOCS if os.environ.get("QAAS_DASHBOARD_SCREENSHOTS") else tmp_path)

    # Delete the node (confirmed): it disappears.
    await peer.get_by_role("button", name="Delete").click()
    await expect(peer).to_have_count(0)

    # The server restarts: the page says so, reconnects, and is live again.
    port = live.port
    await live.stop()
    await expect(page.locator("#conn")).to_contain_text("Connection lost")
    again = LiveServer(settings, live.token, port)
    await again.start()
    try:
        await expect(page.locator("#conn")).to_have_text("Live")
        await network.get_by_label("New node").fill("peer2")
        await network.get_by_role("button", name="Add node").click()
        await expect(network.locator("li.node", has_text="peer2")).to_have_count(1)

        # Delete the network (confirmed): it disappears.
        await network.get_by_role("button", name="Delete network").click()
        await expect(network).to_have_count(0)
    finally:
        await again.stop()
    assert not problems, problems
    await context.close()
