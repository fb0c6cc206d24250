"""dsar/workflow/parts.py to the field: the file names safe_name gives (kept when clean,
else cleaned, cut and told apart by a hash), a part written in a private ``.partial``
folder and in place only on commit, discarding twice harmless, a connector's files kept open
by use (at most 32 at once), keys of dicts inside lists sorted as JSON reads them, and the
staged files and tables UTF-8 whatever the server's locale."""

from __future__ import annotations

import hashlib
import locale
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from dsar.connector import Record
from dsar.workflow.bundle import build
from dsar.workflow.parts import PartWriter, discard_parts, parts_dir, safe_name
from tests.test_bundle import members, request, write
from tests.test_bundle_single_pass import opened_during

REQUEST_ID = "r" * 32


def short_hash(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:8]


def test_safe_names_keep_clean_names_and_clean_cut_and_hash_the_rest() -> None:
    assert safe_name("Customers.v2_x-y") == "Customers.v2_x-y"
    assert safe_name("X y") == f"X_y-{short_hash('X y')}"
    assert safe_name("..#general") == f"general-{short_hash('..#general')}"
    assert safe_name("###") == f"x-{short_hash('###')}"
    long = "a" * 70 + "!"
    assert safe_name(long) == "a" * 60 + f"-{short_hash(long)}"


def test_discarding_parts_twice_or_of_a_request_with_none_is_harmless(tmp_path: Path) -> None:
    discard_parts(tmp_path, REQUEST_ID)
    write(tmp_path, "crm", [Record("customers", "1", "profile", {"n": 1})])
    discard_parts(tmp_path, REQUEST_ID)
    discard_parts(tmp_path, REQUEST_ID)
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The usual umask, so a folder made without its own mode would be rwxr-xr-x."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_a_part_is_written_in_a_private_partial_folder_and_in_place_only_on_commit(
        tmp_path: Path, umask_022: None) -> None:
    staged = parts_dir(tmp_path, REQUEST_ID)
    writer = PartWriter(tmp_path, REQUEST_ID, "crm", run="2")
    writer.add(Record("customers", "1", "profile", {"n": 1}))
    assert [p.name for p in staged.iterdir()] == ["crm.2.partial"]
    assert (staged / "crm.2.partial").stat().st_mode & 0o777 == 0o700
    writer.commit()
    assert [p.name for p in staged.iterdir()] == ["crm.2"]
    assert (staged / "crm.2").stat().st_mode & 0o777 == 0o700


def test_a_busy_collection_stays_open_and_no_more_than_32_files_are(tmp_path: Path) -> None:
    """One collection written between forty others is opened once (the least recently used
    file is the one closed), and never more than 32 of a connector's files are open."""
    writer = PartWriter(tmp_path, REQUEST_ID, "mail")
    most = 0

    def open_files() -> int:
        fds = [os.path.join("/proc/self/fd", fd) for fd in os.listdir("/proc/self/fd")]
        return sum(1 for fd in fds
                   if os.path.exists(fd) and os.readlink(fd).startswith(str(writer.tmp)))

    def write_all() -> None:
        nonlocal most
        for index in range(40):
            writer.add(Record("inbox", str(index), "email", {"n": index}))
            writer.add(Record(f"folder{index}", str(index), "email", {"n": index}))
            most = max(most, open_files())
        writer.commit()

    opened = [Path(p).name for p in opened_during(write_all) if p.endswith(".jsonl")]
    assert opened.count("inbox.jsonl") == 1 and len(opened) == 41, opened
    assert most == 32
    inbox = (parts_dir(tmp_path, REQUEST_ID) / "mail" / "inbox.jsonl").read_text("utf-8")
    assert len(inbox.splitlines()) == 40


def test_keys_of_dicts_inside_lists_are_sorted_as_json_reads_them(tmp_path: Path) -> None:
    write(tmp_path, "crm", [Record("orders", "1", "order", {"items": [{10: "ten", 9: "nine"}],
                                                            "a": 1})])
    files = members(build(tmp_path, request(), {"crm": "crm"}, []).path)
    assert (b'"fields": {"a": 1, "items": [{"10": "ten", "9": "nine"}]}'
            in files["crm.json"]), files["crm.json"]


@pytest.fixture
def ascii_locale() -> Iterator[None]:
    """The process's locale encoding not UTF-8 (ASCII, the C locale's, as a server with a
    Latin-1 or other locale would have its own): open() without an encoding uses it."""
    previous = locale.setlocale(locale.LC_CTYPE)
    locale.setlocale(locale.LC_CTYPE, "C")
    try:
        yield
    finally:
        locale.setlocale(locale.LC_CTYPE, previous)


def test_parts_and_tables_are_utf8_whatever_the_locale(tmp_path: Path,
                                                       ascii_locale: None) -> None:
    assert locale.getpreferredencoding(False) != "UTF-8"  # the locale took effect
    write(tmp_path, "crm", [Record("Kunden", "1", "profile", {"name": "Zoë", "Straße": "Å"})])
    part = parts_dir(tmp_path, REQUEST_ID) / "crm" / "Kunden.jsonl"
    assert "Zoë" in part.read_text("utf-8")
    files = members(build(tmp_path, request(), {"crm": "crm"}, []).path)
    assert files["crm/Kunden.csv"].decode() == ("collection,key,category,name,Straße\r\n"
                                                "Kunden,1,profile,Zoë,Å\r\n")
