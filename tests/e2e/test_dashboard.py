"""The /ui dashboard and /docs in a real browser (Debian's Chromium driven by Playwright): sign
in with a key, watch a running batch's bar move, download its results; Swagger UI offline."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import chat_lines, read_jsonl, sim_config, write_jsonl

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
MASTER = "sk-master-ui-0123456789"
# No network beyond the page under test: assets must come from the package.
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip("no Chromium installed (apt-get install chromium); .ci/run installs it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


def _done(page: Any, batch_id: str) -> int:
    return int(page.inner_text(f'tr[data-batch="{batch_id}"] .count-done'))


def test_dashboard_shows_a_running_batch_and_serves_its_results(
    browser: Any, make_simulator, make_system, tmp_path: Path
) -> None:
    sim = make_simulator({"default": {"latency_ms": 150}})
    config = sim_config(sim.base_url, {"gpt": "openai/gpt-4o-mini"})
    config["general_settings"] = {"master_key": MASTER}
    config["batchgate_settings"] = {"vendors": {"openai": {"max_concurrency": 4}}}
    system = make_system(config)
    base = f"http://127.0.0.1:{system.port}"
    outside: list[str] = []
    context = browser.new_context(accept_downloads=True)
    page = context.new_page()
    page.on("request", lambda r: None if r.url.startswith(base) else outside.append(r.url))

    page.goto(f"{base}/ui")
    page.fill("#api-key", "sk-wrong-key-0000000000")
    page.click("#login button[type=submit]")
    page.wait_for_selector("#login-error:has-text('refused')")
    page.fill("#api-key", MASTER)
    page.click("#login button[type=submit]")
    page.wait_for_selector("#board:not([hidden])")
    assert page.evaluate("sessionStorage.getItem('batchgate-api-key')") == MASTER
    assert MASTER not in page.url
    page.wait_for_selector('#vendors tr[data-vendor="openai"] .slots:has-text("/ 4")')

    batch = system.submit(write_jsonl(tmp_path / "in.jsonl", chat_lines(80, "gpt")), key=MASTER)
    row = f'tr[data-batch="{batch["id"]}"]'
    page.wait_for_selector(f"{row} .status:has-text('in_progress')", timeout=30_000)
    page.wait_for_function(
        "sel => +document.querySelector(sel + ' .count-done')?.textContent > 0",
        arg=row,
        timeout=30_000,
    )
    first = _done(page, batch["id"])
    assert 0 < first < 80 and page.inner_text(f"{row} .count-total") == "80"
    page.wait_for_function(
        "([sel, n]) => +document.querySelector(sel + ' .count-done')?.textContent > n",
        arg=[row, first],
        timeout=30_000,
    )  # the bar moved on its own (auto refresh)
    assert "lines/s" in page.inner_text(f"{row} .rate")

    page.wait_for_selector(f"{row} .status:has-text('completed')", timeout=60_000)
    assert _done(page, batch["id"]) == 80
    assert "gpt" in page.inner_text(row)  # cost by model
    with page.expect_download() as got:
        page.click(f'{row} a[data-file="output"]')
    saved = tmp_path / "from-ui.jsonl"
    got.value.save_as(saved)
    done = system.wait(batch["id"], key=MASTER)
    assert read_jsonl(saved) == system.download(done["output_file_id"], "out.jsonl", key=MASTER)

    # FastAPI's Swagger UI renders with no CDN.
    page.goto(f"{base}/docs")
    page.wait_for_selector(".opblock-summary-path", timeout=30_000)
    assert "/v1/batches/{batch_id}/results" in page.inner_text("body")
    assert outside == [], outside
    context.close()


def test_ui_assets_ship_in_the_package_and_reference_nothing_outside() -> None:
    from batchgate.api.ui import ASSETS

    names = {p.name for p in ASSETS.rglob("*") if p.is_file()}
    assert {"index.html", "dashboard.js", "dashboard.css"} <= names
    for path in ASSETS.rglob("*"):
        if path.is_file():
            text = path.read_text()
            assert "http://" not in text and "https://" not in text, path
