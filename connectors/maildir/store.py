"""The files of one Maildir folder, read and written directly.

Why not ``mailbox.Maildir``: its lookups relist cur/ and new/ whenever they
changed, so an erasure that rewrote one message after another relisted the
whole folder for every message (171 ms a message at 20,000 messages). A
:class:`Folder` lists itself once per call and keeps its index up to date as
it changes files; a message renamed since (its flags changed) costs one more
listing.

Crash safety, by construction:

* a message is written to a dsar temporary file in the folder's tmp/
  (``.dsar-tmp-*``, see :mod:`connectors.filestore`), synced, then linked
  into new/ or cur/; abandoned temporaries are removed when a call opens
  the folder, and so are other tmp/ files untouched for 36 hours (the
  Maildir rule); younger ones belong to the mail server;
* a rewritten message's key is derived from the old key
  (:func:`rewrite_key`), so after a crash between adding the rewrite and
  removing the old version a rerun sees both as versions of one message
  (:meth:`Folder.versions`), keeps the newest and removes the older: one
  copy, never two, never none.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from connectors import filestore

SUBDIRS = ("new", "cur")  # the order mailbox.Maildir lists them in
COLON = ":"
#: how many rewrites of one message a rerun looks for
MAX_VERSIONS = 4


def rewrite_key(key: str) -> str:
    """The key of ``key``'s rewritten version: new (IMAP servers cache sizes
    by file name) yet deterministic, so a rerun recognises a copy it added.
    Keeps the leading timestamp, which clients sort by."""
    stamp = key.partition(".")[0]
    digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:24]
    return f"{stamp if stamp.isdigit() else '0'}.R{digest}.dsar"


class Folder:
    """One Maildir folder (``path`` holds cur/, new/, tmp/). Not thread-safe:
    one per call."""

    def __init__(self, name: str, path: Path) -> None:
        self.name = name
        self.path = path
        self._files: dict[str, str] | None = None

    def clean_tmp(self) -> None:
        """Remove abandoned dsar temporaries and tmp/ files over 36 hours old."""
        filestore.clean(self.path / "tmp", foreign_age=filestore.MAILDIR_TMP_AGE)

    def files(self) -> dict[str, str]:
        """``{key: "cur/<file name>"}``, listed once and then kept current."""
        if self._files is None:
            self._files = self._list()
        return self._files

    def _list(self) -> dict[str, str]:
        files: dict[str, str] = {}
        for sub in SUBDIRS:
            with os.scandir(self.path / sub) as entries:
                for entry in entries:
                    if not entry.is_dir():
                        files[entry.name.split(COLON)[0]] = f"{sub}/{entry.name}"
        return files

    def read(self, key: str) -> bytes | None:
        """The message's bytes, or None when it is gone. A message moved since
        the listing (new/ to cur/, flags changed) is found by one new listing."""
        for attempt in range(2):
            name = self.files().get(key)
            if name is None:
                return None
            try:
                return (self.path / name).read_bytes()
            except FileNotFoundError:
                if attempt == 0:
                    self._files = self._list()
        return None

    def versions(self, key: str) -> list[str]:
        """The keys present of ``key`` and its rewrites, oldest first. More
        than one only after a crash between adding a rewrite and removing
        the version it replaces."""
        found, files = [], self.files()
        for _ in range(MAX_VERSIONS):
            if key in files:
                found.append(key)
            key = rewrite_key(key)
        return found

    def remove(self, key: str) -> None:
        """Delete a message; one already gone is fine."""
        name = self.files().pop(key, None)
        if name is not None:
            (self.path / name).unlink(missing_ok=True)

    def add_rewrite(self, key: str, data: bytes) -> str:
        """Add ``data`` as the rewrite of ``key`` (which stays for now), with
        its subdirectory, flags, mode and date. Returns the new key.

        ``FileExistsError`` when a rewrite appeared since the listing: another
        worker's erasure rewrote the same message at the same time. Its copy
        may still name our subject, so the caller must not remove ``key`` as
        if the rewrite were its own; a retry rewrites the newest version."""
        name = self.files()[key]
        sub, _, filename = name.partition("/")
        new_key = rewrite_key(key)
        new_name = f"{sub}/{new_key}{filename[len(key):]}"
        old = os.stat(self.path / name)
        dest = self.path / new_name
        with filestore.staged(self.path / "tmp", data, dest, old.st_mode & 0o7777,
                              old.st_mtime) as tmp:
            try:
                os.link(tmp, dest)  # never over an existing file
            except PermissionError:  # a file system without hard links
                if dest.exists():
                    raise FileExistsError(dest) from None
                os.rename(tmp, dest)
        self.files()[new_key] = new_name
        return new_key
