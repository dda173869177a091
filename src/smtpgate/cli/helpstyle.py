"""How `--help` names values: in words a user reads (TEXT, INTEGER, PATH), not Python types.

typer writes `<bool>` after every flag, `<list[str]>` after repeatable options and `{email}`
for a required argument. Flags take no value, so they show none; the rest read as click
has always written them. Applied once, by cli/main.py, to every command.
"""

from __future__ import annotations

import datetime as _datetime
import enum
from pathlib import Path
from typing import Any, get_args, get_origin

from typer import _click, core

_WORDS = {str: "TEXT", int: "INTEGER", float: "NUMBER", Path: "PATH", _datetime.datetime: "DATETIME",
          _datetime.timedelta: "DURATION"}


def _word(annotation: Any) -> str:
    if get_origin(annotation) is list:
        return _word(get_args(annotation)[0])
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return "|".join(str(member.value) for member in annotation)
    return _WORDS.get(annotation, "TEXT")


def _display_type(self: core._TyperParameter, ctx: _click.Context) -> str | None:
    if getattr(self, "is_flag", False):  # only options have is_flag
        return None  # a flag takes no value
    desc = self.type_descriptor
    if desc.is_choice:
        return "|".join(str(getattr(c, "value", c)) for c in desc.choices or ())
    return _word(desc.annotation)


def _usage_display_name(self: core.TyperArgument) -> str:
    name = self.metavar or self.name.upper()
    name = name if self.required else f"[{name}]"
    return name + ("..." if self.nargs != 1 else "")


def apply() -> None:
    # typer declares display_type `-> str`, yet every caller reads it through display_type_rich
    # (`-> str | None`) and takes None as "no value": the declaration is narrower than its use
    core._TyperParameter.display_type = _display_type  # type: ignore[method-assign, assignment]
    core.TyperArgument._usage_display_name = _usage_display_name  # type: ignore[method-assign]
