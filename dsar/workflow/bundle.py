"""The export bundle of an access request, built by streaming.

While a task runs, :class:`~.parts.PartWriter` appends the connector's records to one
JSON-lines file per collection under ``EXPORT_DIR/<request>/parts/`` (and on
commit, beside each, its CSV columns: ``<collection>.columns.json``); a run's
part appears under its own name only when complete, and the task's result
names it, so a run whose worker lost the task can never stand in for the one
recorded. When every task has succeeded, the request's bundle step calls
:func:`build`, which streams the named parts into ``EXPORT_DIR/<request>.zip``
(replaced whole, so building again is harmless) and leaves the parts alone:
they are removed by :func:`discard_parts` only once the bundle's release is
committed.

* ``<connector>.json``: ``{"connector": ..., "records": [...]}``
* ``<connector>/<collection>.csv``: one row per record, a column per field
* ``manifest.json``: the request, the identifiers used and their sources,
  record counts, and every other member with its size and SHA-256.

Each part file is read once: the JSON member and the CSV tables are written
from the same pass (the CSV rows wait in a scratch file beside the parts until
the JSON member is closed). Memory stays bounded by one record, the field
names, and a few chunks waiting for the member's compressing thread.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import queue
import re
import shutil
import sys
import tempfile
import threading
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..clock import system_now
from ..models import Request
from .parts import COLUMNS_SUFFIX, PartWriter, discard_parts, parts_dir, safe_name

__all__ = ["FORMAT", "Built", "PartWriter", "build", "discard_parts", "parts_dir", "safe_name"]

FORMAT = "dsar-export/1"
#: bytes handed to a member's thread at a time, and how many may wait for it
_CHUNK = 256 * 1024
_QUEUED_CHUNKS = 4

#: json.dumps(value, ensure_ascii=False, sort_keys=True), without making an encoder a call
_as_json = json.JSONEncoder(ensure_ascii=False, sort_keys=True).encode

#: a zip compression method and its zlib level
Compression = tuple[int, int | None]
#: the values of the EXPORT_COMPRESSION setting
COMPRESSIONS: dict[str, Compression] = {
    "stored": (zipfile.ZIP_STORED, None),
    **{f"deflate-{level}": (zipfile.ZIP_DEFLATED, level) for level in range(1, 10)},
}
#: chosen by measurement (bench/export_large.py): level 1 is several times faster
#: than zlib's default 6 for a zip about a tenth larger
DEFAULT_COMPRESSION = "deflate-1"


@dataclass(frozen=True)
class Built:
    """A bundle on disk: where, how big, its SHA-256 and the records per connector."""

    path: Path
    size: int
    sha256: str
    counts: dict[str, int]


class _Member:
    """One zip member fed in chunks. A thread of its own checksums, hashes,
    compresses and writes each chunk (zlib and hashlib let go of the GIL while
    they work), so compressing overlaps the caller's reading and formatting of
    the next records; at most ``_QUEUED_CHUNKS`` chunks wait. ``size_hint``
    (an upper bound of the member's size) lets zipfile choose ZIP64 headers
    for a member that may pass 2 GiB."""

    def __init__(self, zf: zipfile.ZipFile, name: str, compression: Compression,
                 size_hint: int, stamp: datetime) -> None:
        info = _entry(name, compression, stamp)
        info.file_size = size_hint
        self.name, self.size = name, 0
        self._raw = zf.open(info, "w")
        self._digest = hashlib.sha256()
        self._buffer = bytearray()
        self._queue: queue.Queue[bytearray | None] = queue.Queue(_QUEUED_CHUNKS)
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._drain, name="bundle-member", daemon=True)
        self._thread.start()

    def write(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) >= _CHUNK:
            self._send()

    def entry(self) -> dict[str, Any]:
        """The member as the manifest lists it (once written)."""
        return {"name": self.name, "size": self.size, "sha256": self._digest.hexdigest()}

    def _send(self) -> None:
        if self._failure is not None:
            raise self._failure
        chunk, self._buffer = self._buffer, bytearray()
        self.size += len(chunk)
        self._queue.put(chunk)

    def _drain(self) -> None:
        # keeps taking chunks after a failure, so the caller never blocks on a full queue
        while (chunk := self._queue.get()) is not None:
            if self._failure is None:
                try:
                    self._digest.update(chunk)
                    self._raw.write(chunk)
                except BaseException as exc:  # raised again in the caller's thread
                    self._failure = exc

    def __enter__(self) -> _Member:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        try:
            if exc_type is None and self._buffer:
                self._send()
        finally:
            self._queue.put(None)
            self._thread.join()
            self._raw.close()  # even after an error: the zip can only close without it
        if self._failure is not None:
            raise self._failure


def build(export_dir: Path, request: Request, parts: Mapping[str, str],
          identifiers: list[dict[str, str]],
          compression: str = DEFAULT_COMPRESSION, now: datetime | None = None) -> Built:
    """Assemble the zip from ``parts`` (connector name -> part name) and
    return it with the records counted per connector. The parts stay: a crash
    before the release is committed builds again from them. Rebuilding
    replaces the file; a missing part counts as no records. ``compression``
    is one of :data:`COMPRESSIONS` (``ValueError`` otherwise); ``now``: the
    manifest's time and every member's (default: the system's).
    """
    chosen = _compression(compression)
    stamp = now or system_now()
    staged = parts_dir(export_dir, request.id)
    target = export_dir / f"{request.id}.zip"
    tmp = target.with_suffix(".zip.partial")
    export_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    staged.mkdir(parents=True, exist_ok=True, mode=0o700)
    # the CSV tables wait beside the parts: removed with them, never in a shared /tmp
    scratch = Path(tempfile.mkdtemp(prefix=".bundle-", dir=staged))
    files: list[dict[str, Any]] = []
    counts: dict[str, int] = {}
    try:
        with zipfile.ZipFile(tmp, "w", compression=chosen[0], compresslevel=chosen[1]) as zf:
            for name in sorted(parts):
                counts[name] = _write_connector(zf, name, staged / parts[name], scratch,
                                                files, chosen, stamp)
            manifest = {"format": FORMAT, "generated_at": stamp.isoformat(),
                        "request": {"id": request.id, "kind": request.kind,
                                    "received_at": request.received_at.isoformat()},
                        "identifiers": identifiers,
                        "connectors": [{"name": n, "records": counts[n]} for n in sorted(counts)],
                        "files": files}
            zf.writestr(_entry("manifest.json", chosen, stamp),
                        json.dumps(manifest, indent=2, ensure_ascii=False))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    os.chmod(tmp, 0o600)
    os.replace(tmp, target)
    return Built(target, target.stat().st_size, _file_sha256(target), counts)


def _compression(name: str) -> Compression:
    try:
        return COMPRESSIONS[name]
    except KeyError:
        raise ValueError(f"unknown export compression {name!r}; expected one of "
                         + ", ".join(COMPRESSIONS)) from None


def _write_connector(zf: zipfile.ZipFile, connector: str, part: Path, scratch: Path,
                     files: list[dict[str, Any]], compression: Compression,
                     stamp: datetime) -> int:
    """``<connector>.json`` and its CSV tables from one read of each part file:
    the JSON goes straight into the zip, the CSV rows to a scratch file per
    collection, copied in once the JSON member is closed (zipfile writes one
    member at a time)."""
    folder = safe_name(connector)
    sources = sorted(part.glob("*.jsonl"))
    tables: list[tuple[str, Path]] = []
    count = 0
    # the member is the lines, 4 bytes more each (lines are at least 60 bytes long)
    hint = int(sum(s.stat().st_size for s in sources) * 1.1) + 4096
    with _Member(zf, f"{folder}.json", compression, hint, stamp) as out:
        out.write(b'{"connector": ' + json.dumps(connector, ensure_ascii=False).encode()
                  + b', "records": [')
        for source in sources:
            table = scratch / f"{folder}.{source.stem}.csv"
            count = _one_pass(source, out, table, count)
            tables.append((f"{folder}/{source.stem}.csv", table))
        out.write(b"\n]}\n")
    files.append(out.entry())
    for member, table in tables:
        files.append(_copy_member(zf, member, table, compression, stamp))
        table.unlink()
    return count


def _one_pass(source: Path, out: _Member, table: Path, count: int) -> int:
    """Append one collection's records to the JSON member and write its CSV
    table; returns the records written to the member so far."""
    columns, canonical = _columns(source)
    with source.open("rb") as lines, table.open("w", encoding="utf-8", newline="") as text:
        writer = csv.writer(text)
        writer.writerow(["collection", "key", "category", *columns])
        for line in lines:
            record = json.loads(line)
            out.write(b",\n  " if count else b"\n  ")
            out.write(line.rstrip(b"\n") if canonical else _as_json(record).encode())
            fields = record["fields"]
            row = [record["collection"], record["key"], record["category"],
                   *[v if type(v) is str else _cell(v) for v in map(fields.get, columns)]]
            if all(type(c) is str for c in row[:3]):
                text.write(_csv_line(row))
            else:  # not the contract's strings: csv.writer's own way of writing them
                writer.writerow(row)
            count += 1
    return count


def _columns(source: Path) -> tuple[list[str], bool]:
    """A collection's CSV columns (its field names, first seen first) and
    whether its lines are already in the bundle's form: from the list
    :class:`PartWriter` left beside it, or from a pass over a part staged by
    an older version without one."""
    listed = source.with_name(source.stem + COLUMNS_SUFFIX)
    if listed.is_file():
        meta = json.loads(listed.read_text("utf-8"))
        return list(meta["columns"]), bool(meta["canonical"])
    columns: dict[str, None] = {}
    with source.open("rb") as lines:
        for line in lines:
            columns.update(dict.fromkeys(json.loads(line)["fields"]))
    return list(columns), False


def _copy_member(zf: zipfile.ZipFile, member: str, table: Path,
                 compression: Compression, stamp: datetime) -> dict[str, Any]:
    with _Member(zf, member, compression, table.stat().st_size, stamp) as out, \
            table.open("rb") as source:
        while chunk := source.read(_CHUNK):
            out.write(chunk)
    return out.entry()


def _entry(name: str, compression: Compression, stamp: datetime) -> zipfile.ZipInfo:
    """A member stamped with the bundle's time in UTC (the request's clock, as
    the manifest's ``generated_at``; not 1980), compressed as chosen."""
    method, level = compression
    info = zipfile.ZipInfo(name, date_time=stamp.astimezone(UTC).timetuple()[:6])
    info.compress_type = method
    # ZipFile.open takes the level from the ZipInfo alone (a public field from 3.13)
    setattr(info, "compress_level" if sys.version_info >= (3, 13) else "_compresslevel", level)
    info.external_attr = 0o644 << 16
    return info


#: csv.writer (QUOTE_MINIMAL, "\r\n" line ends) quotes a cell containing one of these
_QUOTED = re.compile(r'[,"\r\n]')


def _csv_line(cells: list[str]) -> str:
    """What csv.writer writes for a row of several strings, several times
    faster on long cells (its loop goes a character at a time)."""
    return ",".join(['"' + c.replace('"', '""') + '"' if _QUOTED.search(c) else c
                     for c in cells]) + "\r\n"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return _as_json(value)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
