"""What the file-store connectors (``maildir``, ``slack_export``) share:
dsar's own temporary files, one erasure at a time per store, and the named
points where a crash is tested.

Every file dsar writes into a store is first written to a temporary file
named ``.dsar-tmp-<random>`` in a folder of that store, under an exclusive
``flock`` held until the file has been moved into place or removed. A killed
process leaves that file behind with whatever it held (half a user list, a
message), and its lock dies with it. :func:`clean` removes such abandoned
files; the connectors call it before they read a folder, so a crash's stray
copy is gone by the next ``find`` (the engine's verifying one included) and
cannot outlive an erasure. A file whose lock is held belongs to a live writer
(another worker) and is left alone.

An erasure reads a file, changes it and writes it back whole, so two at once
on one store (worker threads share a connector instance; worker processes
share the store) would each write back the other's subject from their older
copy. :func:`exclusive` makes them take turns: an ``flock`` on the store's
folder itself, through a descriptor of each call's own, so it separates
threads and processes alike and dies with a killed process.
"""

from __future__ import annotations

import fcntl
import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from dsar.connector import ErasureResult, check_stop

__all__ = ["MAILDIR_TMP_AGE", "TMP_PREFIX", "clean", "crash_point", "exclusive", "staged"]

TMP_PREFIX = ".dsar-tmp-"
#: Maildir's rule: anything in tmp/ untouched for 36 hours may be removed
MAILDIR_TMP_AGE = 36 * 3600
#: how often a waiting erasure tries the store's lock again (and checks its stop token)
LOCK_POLL_SECONDS = 0.05


def crash_point(point: str, target: str) -> None:
    """Called where a crash must leave the store safe; does nothing.

    Crash tests replace it to kill the process at ``point`` while ``target``
    (the file being written) is being changed. Points: ``temp-partial`` (half
    of a temporary file written), ``temp-written`` (complete and synced, not
    yet in place), ``maildir-copy-added`` (a rewritten message is in place,
    the old version not yet removed)."""


@contextmanager
def exclusive(directory: Path) -> Iterator[None]:
    """Hold the store's erasure lock (an exclusive ``flock`` on ``directory``)
    for the block. While another thread or process holds it, wait, and stop
    if the engine asks (:class:`dsar.connector.Stopped`, nothing done).
    Raises ``OSError`` when the folder cannot be opened."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                check_stop(done=ErasureResult())
                time.sleep(LOCK_POLL_SECONDS)
        yield
    finally:
        os.close(fd)  # releases the lock


def _create_locked(directory: Path) -> tuple[int, Path]:
    """A new dsar temporary file, open and locked. Retried when a cleaner
    removed it between its creation and the lock (it looked abandoned)."""
    while True:
        path = directory / f"{TMP_PREFIX}{uuid.uuid4().hex}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd, path
        except FileNotFoundError:
            pass
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


@contextmanager
def staged(
    directory: Path, data: bytes, target: Path, mode: int, mtime: float | None = None
) -> Iterator[Path]:
    """Write ``data`` to a locked dsar temporary file in ``directory``
    (synced, with ``mode`` and optionally ``mtime``) and yield its path; the
    caller moves it into place (``os.replace`` or ``os.link``). Whatever is
    left of it is removed on the way out, before the lock is released."""
    fd, path = _create_locked(directory)
    try:
        half = len(data) // 2
        _write_all(fd, data[:half])
        crash_point("temp-partial", str(target))
        _write_all(fd, data[half:])
        os.fchmod(fd, mode)
        os.fsync(fd)
        if mtime is not None:
            os.utime(fd, (mtime, mtime))
        crash_point("temp-written", str(target))
        yield path
    finally:
        path.unlink(missing_ok=True)
        os.close(fd)


def _remove_if_abandoned(path: str) -> bool:
    """Remove a dsar temporary file whose writer is gone (its lock is free)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except (FileNotFoundError, IsADirectoryError):
        return False  # moved into place meanwhile
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return False  # a live writer
    try:
        os.unlink(path)  # while holding the lock: see _create_locked
    except FileNotFoundError:
        return False
    finally:
        os.close(fd)
    return True


def clean(
    directory: Path,
    ours: Callable[[str], bool] | None = None,
    foreign_age: float | None = None,
) -> int:
    """Remove the abandoned temporary files of ``directory``; returns how many.

    dsar's own (``.dsar-tmp-*``, or names ``ours`` recognises, such as an
    older version's) go as soon as their writer is dead. With
    ``foreign_age``, any other plain file untouched for that many seconds
    goes too (Maildir's tmp/ rule); younger ones belong to a mail server.
    """
    try:
        with os.scandir(directory) as listing:
            entries = list(listing)
    except (FileNotFoundError, NotADirectoryError):
        return 0
    removed, now = 0, time.time()
    for entry in entries:
        if entry.name.startswith(TMP_PREFIX) or (ours is not None and ours(entry.name)):
            removed += _remove_if_abandoned(entry.path)
        elif foreign_age is not None and entry.is_file(follow_symlinks=False):
            try:
                stat = entry.stat(follow_symlinks=False)
                if now - max(stat.st_mtime, stat.st_atime) > foreign_age:
                    os.unlink(entry.path)
                    removed += 1
            except OSError:  # gone, or not ours to remove (read-only, owner): the server's
                continue
    return removed
