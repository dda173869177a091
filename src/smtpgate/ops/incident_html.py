"""The incident report as one self-contained HTML file: for the ticket, the owner, the auditor.

Jinja2 with autoescaping on: every value in the report came from the network at some
point (logins, addresses, reasons), so none is trusted as markup. The template ships in
the package (`ops/templates/incident.html`); the style is inline and there is no script,
so the file opens anywhere, offline, and a strict Content-Security-Policy allows it.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jinja2 import Environment

    from smtpgate.ops.incidents import Report


@lru_cache(maxsize=1)
def _environment() -> Environment:
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    return Environment(loader=PackageLoader("smtpgate.ops", "templates"), autoescape=select_autoescape(["html"]),
                       undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render(report: Report) -> str:
    data = report.to_json()
    return _environment().get_template("incident.html").render(
        incident=data["incident"], timeline=data["timeline"], sources=data["sources"],
    )
