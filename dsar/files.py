"""Folders and files only dsar's own user may open: the instance, export and
outbox folders 0700, the SQLite database 0600 (SQLite gives its WAL and
shared-memory files the database's mode), whatever the process's umask.
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)

FOLDER, FILE = 0o700, 0o600


def private_folder(path: Path) -> Path:
    """``path`` made (with any missing parents, each 0700) and set to 0700. A
    folder dsar may not change (another owner's) is left as it is, with a
    warning: what is below it is as open as the operator made it."""
    missing = []
    folder = path
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for made in reversed(missing):
        made.mkdir(mode=FOLDER, exist_ok=True)
    _set_mode(path, FOLDER)
    return path


def private_file(path: Path) -> None:
    """``path``, when it exists, set to 0600."""
    if path.exists():
        _set_mode(path, FILE)


def _set_mode(path: Path, mode: int) -> None:
    try:
        if path.stat().st_mode & 0o777 != mode:
            path.chmod(mode)
    except OSError as exc:
        log.warning("could not make %s private (%s): its contents are as open as its "
                    "mode", path, type(exc).__name__)
