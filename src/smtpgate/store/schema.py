"""All tables: imports every `models*` module of this package so the metadata is whole.

Each concern keeps its tables in its own module (`models.py` for accounts and
credentials, `models_<concern>.py` for the others) and its migrations on its own branch
from the base revision, so concerns can grow their schema independently.
"""

from __future__ import annotations

import importlib
import pkgutil

import smtpgate.store as _package
from smtpgate.store.models import Base

for _module in pkgutil.iter_modules(_package.__path__):
    if _module.name.startswith("models"):
        importlib.import_module(f"smtpgate.store.{_module.name}")

__all__ = ["Base"]
