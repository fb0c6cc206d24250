"""A connector's records for one request, staged on disk while its task runs.

:class:`PartWriter` appends records to one JSON-lines file per collection
under ``EXPORT_DIR/<request>/parts/<connector>.<run>.partial/`` and, on
commit, writes beside each its CSV columns (``<collection>.columns.json``)
and moves the whole part in place under its own name, which the task's
result records. The bundle (:mod:`.bundle`) is built from the named parts;
:func:`discard_parts` removes them once its release is committed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from ..connector import Record

_MAX_OPEN_FILES = 32
#: beside ``<collection>.jsonl``: its field names and whether its lines are canonical
COLUMNS_SUFFIX = ".columns.json"

#: a part's line, keys sorted or not (values JSON cannot hold become strings)
_PART_LINE = {sort: json.JSONEncoder(ensure_ascii=False, default=str, sort_keys=sort).encode
              for sort in (True, False)}


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
        #: per collection: field names in order of appearance (the CSV columns)
        self._columns: dict[str, dict[str, None]] = {}
        #: per collection: every line already as the bundle writes it (keys sorted)
        self._canonical: dict[str, bool] = {}

    def add(self, record: Record) -> None:
        fields = dict(record.fields)
        # JSON sorts keys as strings: keys of other types are written unsorted and
        # that collection's lines are written again by the build
        canonical = _str_keys(fields)
        line = _PART_LINE[canonical]({"collection": record.collection, "key": record.key,
                                      "category": record.category, "fields": fields})
        self._handle(record.collection).write(line + "\n")
        self._note(record.collection, fields if canonical else json.loads(line)["fields"],
                   canonical)
        self.count += 1

    def _note(self, collection: str, fields: Mapping[str, Any], canonical: bool) -> None:
        columns = self._columns.setdefault(collection, {})
        for name in fields:
            if name not in columns:
                columns[name] = None
        self._canonical[collection] = canonical and self._canonical.get(collection, True)

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
        for collection, columns in self._columns.items():
            meta = {"columns": list(columns), "canonical": self._canonical[collection]}
            (self.tmp / (safe_name(collection) + COLUMNS_SUFFIX)).write_text(json.dumps(meta),
                                                                        "utf-8")
        shutil.rmtree(self.final, ignore_errors=True)
        os.replace(self.tmp, self.final)

    def abort(self) -> None:
        self._close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _close(self) -> None:
        while self._open:
            self._open.popitem()[1].close()


def _str_keys(value: Any) -> bool:
    """Every mapping in ``value`` has string keys only (so sorting them sorts
    them as JSON will read them back)."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and _str_keys(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return all(_str_keys(v) for v in value)
    return True
