"""Files that hold the server's own secrets: created 0600, atomically, never overwritten."""

from __future__ import annotations

import os
from pathlib import Path


def write_secret_file(path: Path, content: str) -> bool:
    """Create `path` with mode 0600 holding `content`; False (and untouched) if it exists."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(content if content.endswith("\n") else content + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    return True
