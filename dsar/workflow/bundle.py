"""The export bundle of an access request, built by streaming.

While a task runs, :class:`PartWriter` appends the connector's records to one
JSON-lines file per collection under ``EXPORT_DIR/<request>/parts/``; a run's
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

Memory stays bounded by one record plus the set of field names.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
import time
import zipfile
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ..connector import Record
from ..database import utcnow
from ..models import Request

FORMAT = "dsar-export/1"
_MAX_OPEN_FILES = 32


def safe_name(name: str) -> str:
    """A file name for a connector or collection: readable, unique per name."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "x"
    if cleaned == name:
        return name
    return f"{cleaned[:60]}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def request_dir(export_dir: Path, request_id: str) -> Path:
    return export_dir / request_id


def parts_dir(export_dir: Path, request_id: str) -> Path:
    return request_dir(export_dir, request_id) / "parts"


def discard_parts(export_dir: Path, request_id: str) -> None:
    """Remove a request's staged parts (after its bundle's release is committed)."""
    shutil.rmtree(request_dir(export_dir, request_id), ignore_errors=True)


@dataclass(frozen=True)
class Built:
    """A bundle on disk: where, how big, its SHA-256 and the records per connector."""

    path: Path
    size: int
    sha256: str
    counts: dict[str, int]


class PartWriter:
    """Collects one connector's records for one request on disk. ``run`` tells
    runs of the same connector apart (the part's name is :attr:`name`)."""

    def __init__(self, export_dir: Path, request_id: str, connector: str, run: str = "") -> None:
        parts = parts_dir(export_dir, request_id)
        self.name = safe_name(connector) + (f".{run}" if run else "")
        self.final = parts / self.name
        self.tmp = parts / (self.name + ".partial")
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir(parents=True, mode=0o700)
        self._open: OrderedDict[str, IO[str]] = OrderedDict()
        self.count = 0

    def add(self, record: Record) -> None:
        line = json.dumps({"collection": record.collection, "key": record.key,
                           "category": record.category, "fields": dict(record.fields)},
                          ensure_ascii=False, default=str)
        self._handle(record.collection).write(line + "\n")
        self.count += 1

    def _handle(self, collection: str) -> IO[str]:
        handle = self._open.pop(collection, None)
        if handle is None:
            if len(self._open) >= _MAX_OPEN_FILES:
                self._open.popitem(last=False)[1].close()
            name = os.path.join(self.tmp, safe_name(collection) + ".jsonl")
            handle = open(name, "a", encoding="utf-8")  # closed in _close
        self._open[collection] = handle
        return handle

    def commit(self) -> None:
        """Replace any earlier part of this connector with this one."""
        self._close()
        shutil.rmtree(self.final, ignore_errors=True)
        os.replace(self.tmp, self.final)

    def abort(self) -> None:
        self._close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _close(self) -> None:
        while self._open:
            self._open.popitem()[1].close()


class _HashingWriter:
    """Writes text into a zip member, counting bytes and hashing them."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw, self.size, self.digest = raw, 0, hashlib.sha256()

    def write(self, text: str) -> int:
        data = text.encode("utf-8")
        self.raw.write(data)
        self.size += len(data)
        self.digest.update(data)
        return len(text)


def _records(part: Path) -> Iterator[dict[str, Any]]:
    for file in sorted(part.glob("*.jsonl")):
        yield from _records_of(file)


def build(export_dir: Path, request: Request, parts: Mapping[str, str],
          identifiers: list[dict[str, str]]) -> Built:
    """Assemble the zip from ``parts`` (connector name -> part name) and
    return it with the records counted per connector. The parts stay: a crash
    before the release is committed builds again from them. Rebuilding
    replaces the file; a missing part counts as no records.
    """
    staged = parts_dir(export_dir, request.id)
    target = export_dir / f"{request.id}.zip"
    tmp = target.with_suffix(".zip.partial")
    export_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    files: list[dict[str, Any]] = []
    counts: dict[str, int] = {}
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(parts):
            part = staged / parts[name]
            counts[name] = _write_json_member(zf, f"{safe_name(name)}.json", name, part, files)
            _write_csv_members(zf, safe_name(name), part, files)
        manifest = {"format": FORMAT, "generated_at": utcnow().isoformat(),
                    "request": {"id": request.id, "kind": request.kind,
                                "received_at": request.received_at.isoformat()},
                    "identifiers": identifiers,
                    "connectors": [{"name": n, "records": counts[n]} for n in sorted(counts)],
                    "files": files}
        zf.writestr(_entry("manifest.json"), json.dumps(manifest, indent=2, ensure_ascii=False))
    os.chmod(tmp, 0o600)
    os.replace(tmp, target)
    return Built(target, target.stat().st_size, _file_sha256(target), counts)


def _write_json_member(zf: zipfile.ZipFile, member: str, connector: str, part: Path,
                       files: list[dict[str, Any]]) -> int:
    count = 0
    with zf.open(_entry(member), "w") as raw:
        out = _HashingWriter(raw)
        out.write('{"connector": ' + json.dumps(connector, ensure_ascii=False) + ', "records": [')
        for record in _records(part):
            out.write(("\n  " if count == 0 else ",\n  ")
                      + json.dumps(record, ensure_ascii=False, sort_keys=True))
            count += 1
        out.write("\n]}\n")
    files.append({"name": member, "size": out.size, "sha256": out.digest.hexdigest()})
    return count


def _write_csv_members(zf: zipfile.ZipFile, folder: str, part: Path,
                       files: list[dict[str, Any]]) -> None:
    for file in sorted(part.glob("*.jsonl")):
        columns: dict[str, None] = {}
        for record in _records_of(file):
            columns.update(dict.fromkeys(record["fields"]))
        member = f"{folder}/{file.stem}.csv"
        with zf.open(_entry(member), "w") as raw:
            out = _HashingWriter(raw)
            writer = csv.writer(out)
            writer.writerow(["collection", "key", "category", *columns])
            for record in _records_of(file):
                fields = record["fields"]
                writer.writerow([record["collection"], record["key"], record["category"],
                                 *(_cell(fields.get(c)) for c in columns)])
        files.append({"name": member, "size": out.size, "sha256": out.digest.hexdigest()})


def _entry(name: str) -> zipfile.ZipInfo:
    """A compressed member stamped with the current time (not 1980)."""
    info = zipfile.ZipInfo(name, date_time=time.gmtime()[:6])
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    return info


def _records_of(file: Path) -> Iterator[dict[str, Any]]:
    with file.open(encoding="utf-8") as handle:
        for line in handle:
            yield json.loads(line)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
