"""A page of the console or the API docs loads without one failed request in the browser's
console (a browser asks for /favicon.ico unless the page names its icon)."""

from __future__ import annotations

from typing import Any

from tests.web.conftest import Console


def test_the_sign_in_page_and_the_api_docs_load_without_a_failed_request(console: Console, browser: Any) -> None:
    page = browser.new_page()
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    try:
        for path in ("/signin", "/api/v1/docs"):
            page.goto(console.base + path, wait_until="networkidle")
    finally:
        page.close()
    assert errors == []
