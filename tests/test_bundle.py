"""The export bundle: layout, checksums, idempotent parts, bounded memory."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import tracemalloc
import zipfile
from datetime import UTC, datetime
from pathlib import Path

from dsar.connector import Record
from dsar.models import Request
from dsar.workflow.bundle import PartWriter, build, discard_parts, safe_name


def request() -> Request:
    return Request(id="r" * 32, kind="access", status="processing",
                   received_at=datetime(2026, 11, 1, 12, 0, tzinfo=UTC),
                   due_at=datetime(2026, 12, 1, 12, 0, tzinfo=UTC))


def write(export: Path, connector: str, records: list[Record]) -> None:
    writer = PartWriter(export, "r" * 32, connector)
    for record in records:
        writer.add(record)
    writer.commit()


def members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def test_layout_manifest_and_checksums(tmp_path: Path) -> None:
    write(tmp_path, "crm", [
        Record("customers", "1", "profile", {"email": "a@example.org", "name": "Ann"}),
        Record("orders", "7", "order", {"total": 12.5, "items": ["x", "y"]}),
        Record("customers", "2", "profile", {"email": "a@example.org", "city": "Oslo"}),
    ])
    write(tmp_path, "chat/slack", [Record("#general", "1.0", "message", {"text": "hé"})])
    identifiers = [{"kind": "email", "value": "a@example.org", "source": "requester"}]
    built = build(tmp_path, request(), {"crm": "crm", "chat/slack": safe_name("chat/slack")},
                  identifiers)
    path, size, sha256 = built.path, built.size, built.sha256
    assert built.counts == {"crm": 3, "chat/slack": 1}
    assert path == tmp_path / f"{'r' * 32}.zip" and size == path.stat().st_size
    assert sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    files = members(path)
    chat = safe_name("chat/slack")
    assert sorted(files) == sorted([
        "manifest.json", "crm.json", "crm/customers.csv", "crm/orders.csv",
        f"{chat}.json", f"{chat}/{safe_name('#general')}.csv"])
    manifest = json.loads(files["manifest.json"])
    assert manifest["format"] == "dsar-export/1"
    assert manifest["identifiers"] == identifiers
    assert manifest["connectors"] == [{"name": "chat/slack", "records": 1},
                                      {"name": "crm", "records": 3}]
    listed = {f["name"]: f for f in manifest["files"]}
    assert set(listed) == set(files) - {"manifest.json"}
    for name, entry in listed.items():
        assert entry["sha256"] == hashlib.sha256(files[name]).hexdigest()
        assert entry["size"] == len(files[name])
    crm = json.loads(files["crm.json"])
    assert crm["connector"] == "crm" and len(crm["records"]) == 3
    rows = list(csv.reader(io.StringIO(files["crm/customers.csv"].decode())))
    assert rows[0] == ["collection", "key", "category", "email", "name", "city"]
    assert rows[1:] == [["customers", "1", "profile", "a@example.org", "Ann", ""],
                        ["customers", "2", "profile", "a@example.org", "", "Oslo"]]
    orders = list(csv.reader(io.StringIO(files["crm/orders.csv"].decode())))
    assert orders[1][3:] == ["12.5", '["x", "y"]']
    assert json.loads(files[f"{chat}.json"])["records"][0]["fields"]["text"] == "hé"
    assert (tmp_path / ("r" * 32) / "parts" / "crm").is_dir()  # kept until the release
    discard_parts(tmp_path, "r" * 32)
    assert not (tmp_path / ("r" * 32)).exists()
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_task_run_twice_exports_once(tmp_path: Path) -> None:
    write(tmp_path, "crm", [Record("customers", "1", "profile", {"n": 1})])
    write(tmp_path, "crm", [Record("customers", "1", "profile", {"n": 1})])
    aborted = PartWriter(tmp_path, "r" * 32, "crm")
    aborted.add(Record("customers", "9", "profile", {"n": 9}))
    aborted.abort()
    path = build(tmp_path, request(), {"crm": "crm"}, []).path
    assert len(json.loads(members(path)["crm.json"])["records"]) == 1


def test_empty_connector_still_listed(tmp_path: Path) -> None:
    write(tmp_path, "crm", [])
    path = build(tmp_path, request(), {"crm": "crm"}, []).path
    files = members(path)
    assert json.loads(files["crm.json"]) == {"connector": "crm", "records": []}
    assert json.loads(files["manifest.json"])["connectors"] == [{"name": "crm", "records": 0}]


def _peak_memory(export: Path, count: int) -> int:
    payload = "x" * 150
    tracemalloc.start()
    try:
        writer = PartWriter(export, "r" * 32, "mail")
        for index in range(count):
            writer.add(Record(f"folder{index % 40}", str(index), "email",
                              {"subject": payload, "n": index}))
        writer.commit()
        path = build(export, request(), {"mail": "mail"}, []).path
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    with zipfile.ZipFile(path) as zf:
        assert json.loads(zf.read("manifest.json"))["connectors"][0]["records"] == count
    return peak


def test_memory_stays_bounded_for_many_records(tmp_path: Path) -> None:
    """Five times the records (60,000: ~14 MB of JSON) take about the same
    memory: nothing is held per record."""
    small = _peak_memory(tmp_path / "small", 12_000)
    large = _peak_memory(tmp_path / "large", 60_000)
    assert large < small * 1.5 + 1_000_000, (small, large)
    assert large < 8_000_000, large
