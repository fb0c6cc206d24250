"""dsar/workflow/bundle.py to the byte: the manifest as documented (indented UTF-8 JSON,
the request's fields, each member's size and SHA-256 however many chunks it took), members
stamped in UTC and rw-r--r--, each compressed at the chosen level, ZIP64 headers only for a
member that may pass the limit, the folders a build makes private, the CSV tables waiting in
a hidden folder beside the parts, the members' threads named daemons, a write the zip
refuses failing the build, and memory held to a few chunks however large the bundle."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import tracemalloc
import zipfile
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from dsar.connector import Record
from dsar.workflow import bundle
from dsar.workflow.bundle import build, parts_dir, safe_name
from tests.test_bundle import members, request, write

REQUEST_ID = "r" * 32
#: 23:30:04 at UTC+1: 22:30:04 UTC, the next morning in Tokyo
NOW = datetime(2026, 11, 2, 23, 30, 4, tzinfo=timezone(timedelta(hours=1)))


@pytest.fixture
def server_in_tokyo(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process's local time zone nine hours ahead of UTC (POSIX TZ: no tzdata needed)."""
    monkeypatch.setenv("TZ", "JST-9")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The usual umask, so a folder made without its own mode would be rwxr-xr-x."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_the_manifest_is_indented_utf8_json_listing_each_member_as_written(
        tmp_path: Path, server_in_tokyo: None) -> None:
    assert time.localtime(0).tm_hour == 9  # the zone took effect
    big = "x" * 300_000  # a member of several chunks
    write(tmp_path, "café", [Record("Kunden", "1", "profile", {"name": "Zoë", "bio": big}),
                             Record("Kunden", "2", "profile", {"name": "Åsa"})])
    identifiers = [{"kind": "email", "value": "zoë@example.org", "source": "requester"}]
    built = build(tmp_path, request(), {"café": safe_name("café")}, identifiers, now=NOW)
    files = members(built.path)
    folder = safe_name("café")
    written = [f"{folder}.json", f"{folder}/Kunden.csv"]
    assert sorted(files) == sorted([*written, "manifest.json"])
    assert all(len(files[name]) > bundle._CHUNK for name in written)
    expected = {
        "format": "dsar-export/1", "generated_at": "2026-11-02T23:30:04+01:00",
        "request": {"id": REQUEST_ID, "kind": "access", "received_at": "2026-11-01T12:00:00+00:00"},
        "identifiers": identifiers,
        "connectors": [{"name": "café", "records": 2}],
        "files": [{"name": name, "size": len(files[name]),
                   "sha256": hashlib.sha256(files[name]).hexdigest()} for name in written]}
    assert files["manifest.json"] == json.dumps(expected, indent=2, ensure_ascii=False).encode()
    assert files[written[0]].startswith('{"connector": "café", "records": [\n  '.encode())
    assert json.loads(files[written[0]])["records"][1]["fields"] == {"name": "Åsa"}
    with zipfile.ZipFile(built.path) as zf:
        stamps = {(i.filename, i.date_time, i.external_attr) for i in zf.infolist()}
    assert stamps == {(name, (2026, 11, 2, 22, 30, 4), 0o644 << 16) for name in files}


def test_each_member_is_compressed_at_the_chosen_level(tmp_path: Path) -> None:
    write(tmp_path, "crm", [Record("c", str(i), "p", {"text": f"message {i} " * (i % 40)})
                            for i in range(1500)])
    sizes = {}
    for level in ("deflate-1", "deflate-9"):
        path = build(tmp_path, request(), {"crm": "crm"}, [], compression=level, now=NOW).path
        with zipfile.ZipFile(path) as zf:
            sizes[level] = {i.filename: i.compress_size for i in zf.infolist()}
    for name in ("crm.json", "crm/c.csv"):
        assert sizes["deflate-9"][name] < sizes["deflate-1"][name], (name, sizes)


def test_a_member_gets_zip64_headers_when_it_may_pass_the_limit_and_only_then(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """zipfile chooses a member's headers when it opens it, from the size hint: one too
    small and a member past the limit fails the build; one too large marks a member far
    below it as needing ZIP64 (version 4.5), which older unzip tools refuse. The limit is
    lowered so the test writes kilobytes, not gigabytes."""
    write(tmp_path, "mail", [Record("inbox", str(i), "email", {"body": "y" * 300})
                             for i in range(1000)])
    lines = sum(p.stat().st_size for p in (parts_dir(tmp_path, REQUEST_ID) / "mail").iterdir()
                if p.suffix == ".jsonl")
    versions = {}
    for limit in (int(lines * 0.99), int(lines * 1.5)):
        monkeypatch.setattr(zipfile, "ZIP64_LIMIT", limit)
        path = build(tmp_path, request(), {"mail": "mail"}, [], compression="stored").path
        monkeypatch.undo()
        with zipfile.ZipFile(path) as zf:
            info = zf.getinfo("mail.json")
            assert len(zf.read(info)) > lines
            versions[limit] = info.extract_version
    assert list(versions.values()) == [zipfile.ZIP64_VERSION, zipfile.DEFAULT_VERSION]


def test_a_build_where_nothing_was_staged_makes_private_folders(tmp_path: Path,
                                                                umask_022: None) -> None:
    export = tmp_path / "srv" / "exports"  # neither exists yet
    built = build(export, request(), {"crm": "crm"}, [])
    assert built.counts == {"crm": 0} and built.path == export / f"{REQUEST_ID}.zip"
    assert json.loads(members(built.path)["crm.json"]) == {"connector": "crm", "records": []}
    assert export.stat().st_mode & 0o777 == 0o700
    assert parts_dir(export, REQUEST_ID).stat().st_mode & 0o777 == 0o700


def test_tables_wait_in_a_hidden_private_folder_beside_the_parts_and_threads_are_named_daemons(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never in a shared /tmp, never a name a part can have (safe_name strips a leading
    dot); the member's thread is named in a thread dump (py-spy) and never holds the
    process open."""
    write(tmp_path, "crm", [Record("customers", "1", "profile", {"n": 1}),
                            Record("orders", "2", "order", {"n": 2})])
    before = set(threading.enumerate())
    seen: list[tuple[Path, int, list[tuple[str, bool]]]] = []
    one_pass = bundle._one_pass

    def spy(source: Path, out: Any, table: Path, count: int) -> int:
        threads = [(t.name, t.daemon) for t in threading.enumerate() if t not in before]
        seen.append((table.parent, table.parent.stat().st_mode & 0o777, threads))
        return one_pass(source, out, table, count)

    monkeypatch.setattr(bundle, "_one_pass", spy)
    build(tmp_path, request(), {"crm": "crm"}, [])
    staged = parts_dir(tmp_path, REQUEST_ID)
    assert len(seen) == 2 and seen[0][0] == seen[1][0]
    scratch, mode, threads = seen[0]
    assert scratch.parent == staged and scratch.name.startswith(".bundle-") and mode == 0o700
    assert threads == [("bundle-member", True)]
    assert not scratch.exists()


def test_a_write_the_zip_refuses_fails_the_build(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "crm", [Record("customers", "1", "profile", {"n": 1})])
    member_file: Any = vars(zipfile)["_ZipWriteFile"]  # what ZipFile.open(..., "w") returns
    original = member_file.write

    def disk_full(self: Any, data: bytes) -> int:
        if self._zinfo.filename == "crm.json":
            raise OSError(28, "No space left on device")
        written: int = original(self, data)
        return written

    monkeypatch.setattr(member_file, "write", disk_full)
    with pytest.raises(OSError, match="No space left"):
        build(tmp_path, request(), {"crm": "crm"}, [])
    assert not (tmp_path / f"{REQUEST_ID}.zip").exists()


def test_an_unknown_compression_is_refused_naming_the_choices(tmp_path: Path) -> None:
    with pytest.raises(ValueError) as refused:
        build(tmp_path, request(), {}, [], compression="zstd")
    assert str(refused.value) == (
        "unknown export compression 'zstd'; expected one of stored, deflate-1, deflate-2, "
        "deflate-3, deflate-4, deflate-5, deflate-6, deflate-7, deflate-8, deflate-9")


def test_a_large_bundle_is_copied_and_hashed_a_chunk_at_a_time(tmp_path: Path) -> None:
    """12 MB of members (a 6 MB table): neither the table nor the zip is read whole
    (the peak is under 3 MB; reading either whole takes over 12)."""
    write(tmp_path, "mail", [Record("inbox", str(i), "email", {"body": f"{i:05d}" * 2000})
                             for i in range(600)])
    tracemalloc.start()
    try:
        built = build(tmp_path, request(), {"mail": "mail"}, [], compression="stored")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert built.size > 12_000_000
    assert built.sha256 == hashlib.sha256(built.path.read_bytes()).hexdigest()
    assert peak < 6_000_000, peak
