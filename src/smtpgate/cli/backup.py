"""`smtpgate backup DEST` and `smtpgate restore SRC`: the face of smtpgate.backup."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from smtpgate.cli.common import ConfigOption, JsonOption, err, fail, handled_errors, out, print_json
from smtpgate.config import CONFIG_ENV, load_config


def backup(
    destination: Annotated[Path, typer.Argument(metavar="DEST", help="A new (or empty) folder for the backup.",
                                                show_default=False)],
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """Back up database, keys, certificates, queue and capture; safe while the server runs."""
    from smtpgate.backup import BackupError, create_backup, describe

    with handled_errors():
        cfg = load_config(config)
        try:
            summary = create_backup(cfg, destination)
        except BackupError as exc:
            fail(str(exc))
    if json:
        print_json(describe(summary))
        return
    messages = ", ".join(f"{n} {name}" for name, n in summary.messages.items()) or "no spool"
    out.print(f"Backed up {cfg.base_dir} to {summary.folder}", markup=False)
    out.print(f"  {summary.files} files, {summary.size:,} bytes; database: {summary.database}; messages: {messages}",
              markup=False)
    for item in summary.not_included:
        err.print(f"warning: not in the backup: {item}; back it up with the system's files", markup=False)


def restore(
    source: Annotated[Path, typer.Argument(metavar="SRC", help="A folder `smtpgate backup` wrote.", show_default=False)],
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="The data dir to restore into "
                                                  "(default: the folder of --config / $SMTPGATE_CONFIG).",
                                                  show_default=False)] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace a non-empty data dir (its contents are moved "
                                        "aside) and an existing database.")] = False,
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """Restore a backup into a data dir, after checking every file's checksum. Stop the server first."""
    from smtpgate.backup import BackupError, describe, restore_backup

    target = data_dir or (config.parent if config else None)
    if target is None and os.environ.get(CONFIG_ENV):
        target = Path(os.environ[CONFIG_ENV]).parent
    if target is None:
        fail("no data dir to restore into", "Pass --data-dir DIR (a new folder), or --config of the installation.",
             code=2)
    with handled_errors():
        try:
            summary = restore_backup(source, target, force=force)
        except BackupError as exc:
            fail(str(exc))
    if json:
        print_json(describe(summary))
        return
    out.print(f"Restored {source} into {summary.folder} ({summary.files} files; database: {summary.database})",
              markup=False)
    if summary.replaced:
        out.print(f"  the previous contents are in {summary.replaced}", markup=False)
    err.print(f"Next: smtpgate serve --config {summary.folder / summary.config}", markup=False)


def register(root: typer.Typer) -> None:
    root.command("backup")(backup)
    root.command("restore")(restore)
