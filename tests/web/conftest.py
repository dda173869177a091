"""One server and one Chromium for a browser test module (Playwright driving Debian's
Chromium; Playwright cannot download a browser here). The console is opened as
http://localhost:PORT: WebAuthn needs a domain as its relying party, never an IP address."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import need
from tests.smtp.server_harness import RunningServer, init_data_dir, wait_for_port

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync"]
AXE = Path(__file__).resolve().parents[1] / "clients" / "node_modules" / "axe-core" / "axe.min.js"
# Screenshots go to a temporary folder, so a test run changes no tracked file;
# SMTPGATE_SCREENSHOTS=docs/screenshots refreshes the ones the docs show.
SHOTS = Path(os.environ.get("SMTPGATE_SCREENSHOTS") or Path(tempfile.gettempdir()) / "smtpgate-screenshots")


def check_axe(page: Any, name: str) -> None:
    """No serious or critical axe-core violation on the page as it stands."""
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("async () => (await axe.run(document, {resultTypes: ['violations']})).violations")
    bad = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3]) for v in result if v["impact"] in ("serious", "critical")]
    assert not bad, f"{name}: {bad}"


def shoot(page: Any, name: str) -> None:
    """Screenshots at a phone's and a desktop's width; nothing wider than the phone's screen."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    for width, label in ((390, "phone"), (1280, "desktop")):
        page.set_viewport_size({"width": width, "height": 844 if width == 390 else 900})
        page.screenshot(path=str(SHOTS / f"{name}-{label}.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth") <= 390, name
    page.set_viewport_size({"width": 1280, "height": 900})


@dataclass
class Console:
    server: RunningServer
    base: str


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    server = RunningServer(init_data_dir(tmp_path_factory.mktemp("web") / "data"))
    server.start()
    port = int(server.config.admin.listen.rpartition(":")[2])
    wait_for_port(port, server.proc, server.log_path)  # type: ignore[arg-type]
    yield Console(server, f"http://localhost:{port}")
    server.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    chromium = shutil.which("chromium")
    need(chromium is not None, "chromium is missing (scripts/install-test-clients.sh installs it)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        need(False, "playwright is missing (pip install -e '.[test]')")
        raise
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
