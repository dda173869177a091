"""Client-side diagnosis of any SMTP submission server: `smtpgate doctor`.

It never imports the server's internals: it speaks SMTP over the network like any mail
client would, so it diagnoses Postfix, a provider's server or smtpgate the same way.
The names below load on first use, so `smtpgate.client` (which needs only the
explanations) does not pull in the resolver and the probe.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Explanation": "explain",
    "explain_reply": "explain",
    "PortSpec": "probe",
    "Check": "report",
    "Report": "report",
    "Status": "report",
    "DEFAULT_PORTS": "runner",
    "DoctorOptions": "runner",
    "diagnose": "runner",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'smtpgate.doctor' has no attribute {name!r}")
    return getattr(importlib.import_module(f"smtpgate.doctor.{_EXPORTS[name]}"), name)
