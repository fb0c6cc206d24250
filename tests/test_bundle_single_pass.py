"""The bundle in one pass: each part file read once, the same bytes as the
reference (two-pass) layout, a chosen compression, members past ZIP64's limit."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import sys
import zipfile
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsar.connector import Record
from dsar.workflow import bundle
from dsar.workflow.bundle import PartWriter, build, parts_dir, safe_name
from tests.test_bundle import members, request

#: paths opened while a build runs (an audit hook: sees every open, whoever calls it)
_OPENED: list[str] | None = None


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event == "open" and _OPENED is not None and isinstance(args[0], str | Path):
        _OPENED.append(str(args[0]))


sys.addaudithook(_audit)


def opened_during(call: Any) -> list[str]:
    global _OPENED
    _OPENED = []
    try:
        call()
        return _OPENED
    finally:
        _OPENED = None


TRICKY = [
    Record("customers", "1", "profile", {"email": "a@example.org", "name": "Ann"}),
    Record("customers", "2", "profile", {"city": "Oslo", "email": "a@example.org",
                                         "nested": {"b": 1, "a": [1.5, None, True]}}),
    Record("orders", "7", "order", {"total": 12.5, "items": ["x", "y"],
                                    "at": datetime(2026, 1, 2, 3, 4, tzinfo=UTC),
                                    "on": date(2026, 1, 2), "price": Decimal("9.90")}),
    # keys that are not strings: JSON makes them strings, sorted as strings
    Record("orders", "8", "order", {10: "ten", 9: "nine", "note": "ok"}),
    Record("orders", "9", "order", {"map": {2: "b", "1": "a"}, "empty": {}, "s": ""}),
    Record("#général", "1.0", "message", {"text": "hé \"quoted\", comma\nnew line\r\n",
                                          "z": "\u2028", "n": -0.0, "big": 10**30}),
    Record("customers", "3", "profile", {"phone": "+47", "email": None}),
    Record("orders", 11, "order", {"total": 3}),  # not the contract's str: written as before
]


def cell(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False,
                                                           sort_keys=True)


def staged_before(records: list[Record]) -> dict[str, list[str]]:
    """The part files the two-pass version staged: per collection file, its
    lines (keys in the record's order)."""
    lines: dict[str, list[str]] = {}
    for record in records:
        line = json.dumps({"collection": record.collection, "key": record.key,
                           "category": record.category, "fields": dict(record.fields)},
                          ensure_ascii=False, default=str)
        lines.setdefault(safe_name(record.collection), []).append(line + "\n")
    return lines


def reference(records: list[Record], connector: str) -> dict[str, bytes]:
    """The members the two-pass version made of these records (dsar-export/1)."""
    everything = []
    out: dict[str, bytes] = {}
    for stem, lines in sorted(staged_before(records).items()):
        loaded = [json.loads(line) for line in lines]
        everything += loaded
        columns: dict[str, None] = {}
        for record in loaded:
            columns.update(dict.fromkeys(record["fields"]))
        text = io.StringIO(newline="")
        writer = csv.writer(text)
        writer.writerow(["collection", "key", "category", *columns])
        for record in loaded:
            writer.writerow([record["collection"], record["key"], record["category"],
                             *(cell(record["fields"].get(c)) for c in columns)])
        out[f"{safe_name(connector)}/{stem}.csv"] = text.getvalue().encode()
    body = "".join(("\n  " if i == 0 else ",\n  ")
                   + json.dumps(r, ensure_ascii=False, sort_keys=True)
                   for i, r in enumerate(everything))
    out[f"{safe_name(connector)}.json"] = (
        '{"connector": ' + json.dumps(connector, ensure_ascii=False) + ', "records": ['
        + body + "\n]}\n").encode()
    return out


def write(export: Path, connector: str, records: list[Record]) -> None:
    writer = PartWriter(export, "r" * 32, connector)
    for record in records:
        writer.add(record)
    writer.commit()


def test_members_are_the_reference_layout_byte_for_byte(tmp_path: Path) -> None:
    write(tmp_path, "crm", TRICKY * 3)
    expected = reference(TRICKY * 3, "crm")
    files = members(build(tmp_path, request(), {"crm": "crm"}, []).path)
    assert {n: files[n] for n in expected} == expected
    listed = json.loads(files["manifest.json"])["files"]
    assert [f["name"] for f in listed] == ["crm.json", "crm/customers.csv",
                                           f"crm/{safe_name('#général')}.csv", "crm/orders.csv"]
    for entry in listed:
        assert entry["sha256"] == hashlib.sha256(expected[entry["name"]]).hexdigest()


def test_a_part_staged_before_the_single_pass_builds_the_same(tmp_path: Path) -> None:
    """Parts an older version staged (no column list beside them, keys in the
    record's order) still build; a crash across an upgrade must not lose them."""
    part = parts_dir(tmp_path, "r" * 32) / "crm"
    part.mkdir(parents=True)
    for stem, lines in staged_before(TRICKY).items():
        (part / f"{stem}.jsonl").write_text("".join(lines), "utf-8")
    expected = reference(TRICKY, "crm")
    files = members(build(tmp_path, request(), {"crm": "crm"}, []).path)
    assert {n: files[n] for n in expected} == expected


def test_each_part_file_is_read_once(tmp_path: Path) -> None:
    write(tmp_path, "crm", TRICKY)
    write(tmp_path, "mail", [Record(f"folder{i % 3}", str(i), "email", {"n": i, f"f{i}": 1})
                             for i in range(50)])
    opened = opened_during(lambda: build(tmp_path, request(), {"crm": "crm", "mail": "mail"},
                                         []))
    reads = [p for p in opened if p.endswith(".jsonl")]
    assert len(reads) == 6, reads
    assert sorted(reads) == sorted(set(reads))


@pytest.mark.parametrize(("compression", "method"), [("stored", zipfile.ZIP_STORED),
                                                     ("deflate-1", zipfile.ZIP_DEFLATED),
                                                     ("deflate-9", zipfile.ZIP_DEFLATED)])
def test_compression_is_a_choice(tmp_path: Path, compression: str, method: int) -> None:
    write(tmp_path, "crm", TRICKY * 50)
    path = build(tmp_path, request(), {"crm": "crm"}, [], compression=compression).path
    with zipfile.ZipFile(path) as zf:
        assert {i.compress_type for i in zf.infolist()} == {method}
        assert zf.testzip() is None
    expected = reference(TRICKY * 50, "crm")
    files = members(path)
    assert {n: files[n] for n in expected} == expected


def test_higher_levels_make_smaller_zips(tmp_path: Path) -> None:
    write(tmp_path, "crm", [Record("c", str(i), "p", {"text": f"message {i} " * (i % 40)})
                            for i in range(3000)])
    sizes = {c: build(tmp_path, request(), {"crm": "crm"}, [], compression=c).size
             for c in ("stored", "deflate-1", "deflate-9")}
    assert sizes["stored"] > sizes["deflate-1"] > sizes["deflate-9"], sizes


def test_an_unknown_compression_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "crm", TRICKY)
    with pytest.raises(ValueError, match="zstd"):
        build(tmp_path, request(), {"crm": "crm"}, [], compression="zstd")


def test_members_past_the_zip64_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A member over 2 GiB needs ZIP64 headers chosen when it is opened; the
    limit is lowered here so the test writes megabytes, not gigabytes."""
    monkeypatch.setattr(zipfile, "ZIP64_LIMIT", 200_000)
    records = [Record("inbox", str(i), "email", {"body": "x" * 300}) for i in range(1000)]
    write(tmp_path, "mail", records)
    path = build(tmp_path, request(), {"mail": "mail"}, [], compression="stored").path
    monkeypatch.undo()
    expected = reference(records, "mail")
    files = members(path)
    assert {n: files[n] for n in expected} == expected
    assert len(files["mail.json"]) > 200_000 and len(files["mail/inbox.csv"]) > 200_000


def test_a_failed_build_leaves_no_scratch_files(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "crm", TRICKY)

    def broken(value: Any) -> str:
        raise OSError("disk full")

    monkeypatch.setattr(bundle, "_cell", broken)
    with pytest.raises(OSError, match="disk full"):
        build(tmp_path, request(), {"crm": "crm"}, [])
    assert sorted(p.name for p in parts_dir(tmp_path, "r" * 32).iterdir()) == ["crm"]


@settings(max_examples=500, derandomize=True)
@given(st.lists(st.text(alphabet=st.sampled_from(',"\r\n \t;\'x\u2028é\x00'))
                | st.text(), min_size=2, max_size=6))
def test_csv_lines_are_what_csv_writer_writes(cells: list[str]) -> None:
    text = io.StringIO(newline="")
    csv.writer(text).writerow(cells)
    assert bundle._csv_line(cells) == text.getvalue()
