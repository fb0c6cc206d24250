"""The slack_export connector against a Slack export written as files."""

from __future__ import annotations

import fcntl
import json
import threading
from pathlib import Path
from typing import Any

import pytest
from marshmallow import ValidationError

from connectors import filestore, slack_export
from connectors.slack_export import SlackExportConnector
from dsar.connector import Action, ErasureResult, Stopped, Subject, stop_scope
from dsar.testing import ConnectorContract
from tests.connectors.erasing_together import erase_together

ALICE = Subject({"email": {"alice@example.org"}})
BOB = Subject({"email": {"bob@example.org"}})
ALICE_BY_PHONE = Subject({"phone": {"+44 7700 900123"}})


def user(uid: str, name: str, email: str, phone: str = "") -> dict[str, Any]:
    return {
        "id": uid,
        "team_id": "T1",
        "name": name.lower(),
        "deleted": False,
        "real_name": f"{name} Example",
        "tz": "Europe/London",
        "tz_label": "British Summer Time",
        "is_admin": False,
        "is_bot": False,
        "profile": {
            "title": "Engineer",
            "phone": phone,
            "real_name": f"{name} Example",
            "display_name": name,
            "email": email,
            "image_72": f"https://avatars.test/{uid}_72.png",
            "avatar_hash": "abc123",
            "fields": {"Xf1": {"value": "likes tea"}},
            "team": "T1",
            "first_name": name,
        },
    }


def msg(uid: str, ts: str, text: str, **extra: Any) -> dict[str, Any]:
    return {"type": "message", "user": uid, "text": text, "ts": ts, **extra}


DAYS: dict[str, dict[str, list[dict[str, Any]]]] = {
    "general": {
        "2024-05-01": [
            msg("U3", "1714550000.000100", "Guten Morgen, Grüße!"),
            msg(
                "U1",
                "1714550100.000200",
                "Hi all, Alice here",
                user_profile={"real_name": "Alice Example", "name": "alice"},
            ),
            msg(
                "U2",
                "1714550200.000300",
                "Lunch?",
                reactions=[
                    {"name": "thumbsup", "users": ["U1", "U3"], "count": 2},
                    {"name": "tada", "users": ["U1"], "count": 1},
                ],
            ),
            msg(
                "U2",
                "1714550300.000400",
                "Thread",
                thread_ts="1714550300.000400",
                reply_count=2,
                reply_users=["U1", "U3"],
                reply_users_count=2,
                replies=[
                    {"user": "U1", "ts": "1714640000.000100"},
                    {"user": "U3", "ts": "1714640100.000200"},
                ],
            ),
        ],
        "2024-05-02": [
            msg("U1", "1714640000.000100", "my reply", thread_ts="1714550300.000400"),
            msg("U3", "1714640100.000200", "carol's reply", thread_ts="1714550300.000400"),
        ],
    },
    "random": {
        "2024-05-01": [
            msg("U1", "1714550400.000500", "cat picture", files=[{"id": "F1", "name": "cat.png"}]),
            msg("U2", "1714550500.000600", "nice"),
        ],
        "2024-05-03": [msg("U3", "1714720000.000100", "quiet day")],
    },
}


def seed(root: Path) -> None:
    root.mkdir()
    users = [
        user("U1", "Alice", "Alice@Example.org", "+44 7700 900123"),
        user("U2", "Bob", "bob@example.org"),
        user("U3", "Carol", "carol@example.org"),
    ]
    channels = [
        {"id": "C1", "name": "general", "members": ["U1", "U2", "U3"]},
        {"id": "C2", "name": "random", "members": ["U1", "U2", "U3"]},
    ]
    write(root / "users.json", users)
    write(root / "channels.json", channels)
    for channel, days in DAYS.items():
        (root / channel).mkdir()
        for day, messages in days.items():
            write(root / channel / f"{day}.json", messages)


def write(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=4, ensure_ascii=False), encoding="utf-8")


def read(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def make(root: Path) -> SlackExportConnector:
    return SlackExportConnector("slack", SlackExportConnector.load_config({"path": str(root)}))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    seed(tmp_path / "export")
    return tmp_path / "export"


class TestSlackExportContract(ConnectorContract):
    @pytest.fixture
    def connector(self, root: Path) -> SlackExportConnector:
        return make(root)

    @pytest.fixture
    def subject(self) -> Subject:
        return ALICE

    @pytest.fixture
    def other_subject(self) -> Subject:
        return BOB

    @pytest.fixture
    def shared_refs(self) -> set[tuple[str, str]]:
        # Bob's messages that carry Alice's reactions and thread replies
        return {("general", "1714550200.000300"), ("general", "1714550300.000400")}

    @pytest.fixture
    def unreachable_connector(self, tmp_path: Path) -> SlackExportConnector:
        return make(tmp_path / "no-such-export")


def test_find_profile_and_messages(root: Path) -> None:
    found = {r.ref: r for r in make(root).find(ALICE)}
    assert set(found) == {
        ("users", "U1"),
        ("general", "1714550100.000200"),
        ("general", "1714640000.000100"),
        ("random", "1714550400.000500"),
    }
    profile = found[("users", "U1")].fields
    assert profile["profile"]["email"] == "Alice@Example.org"
    assert not any(k.startswith("image_") for k in profile["profile"])
    assert found[("random", "1714550400.000500")].fields["files"] == ["cat.png"]
    assert {r.ref for r in make(root).find(ALICE_BY_PHONE)} == set(found)


def test_plan(root: Path) -> None:
    plan = make(root).plan_erasure(ALICE)
    assert plan.summary() == {"delete": 3, "mask": 1, "keep": 0}
    assert plan.extra == {"user_ids": ["U1"]}


def test_erase_rewrites_files_in_slack_layout(root: Path) -> None:
    before = {p: p.read_text(encoding="utf-8") for p in root.rglob("*.json")}
    connector = make(root)
    result = connector.erase(connector.plan_erasure(ALICE))
    assert (result.deleted, result.masked) == (3, 1)
    for path in root.rglob("*.json"):
        text = path.read_text(encoding="utf-8")
        assert isinstance(json.loads(text), list), path
        assert text.startswith("[\n    {"), "indent 4 like Slack"
    untouched = root / "random" / "2024-05-03.json"
    assert untouched.read_text(encoding="utf-8") == before[untouched], (
        "files without changes are not rewritten"
    )
    assert "Grüße" in (root / "general" / "2024-05-01.json").read_text(encoding="utf-8")
    assert not list(root.rglob("*.tmp")), "no temp files left"


def test_erase_removes_messages_keeps_others_in_order(root: Path) -> None:
    connector = make(root)
    connector.erase(connector.plan_erasure(ALICE))
    day1 = read(root / "general" / "2024-05-01.json")
    assert [m["ts"] for m in day1] == [
        "1714550000.000100",
        "1714550200.000300",
        "1714550300.000400",
    ]
    assert day1[0] == DAYS["general"]["2024-05-01"][0], "others' messages untouched"
    assert day1[1]["reactions"] == [{"name": "thumbsup", "users": ["U3"], "count": 1}]
    assert day1[2]["replies"] == [{"user": "U3", "ts": "1714640100.000200"}]
    assert (day1[2]["reply_count"], day1[2]["reply_users"]) == (1, ["U3"])
    assert read(root / "general" / "2024-05-02.json") == [DAYS["general"]["2024-05-02"][1]]
    assert read(root / "random" / "2024-05-01.json") == [DAYS["random"]["2024-05-01"][1]]


def test_erase_blanks_the_profile(root: Path) -> None:
    connector = make(root)
    connector.erase(connector.plan_erasure(ALICE))
    users = read(root / "users.json")
    assert [u["id"] for u in users] == ["U1", "U2", "U3"]
    alice = users[0]
    assert alice["name"] == "erased-U1" and alice["real_name"] == "" and alice["deleted"] is True
    assert alice["tz"] == ""
    profile = alice["profile"]
    assert (
        profile["email"]
        == profile["phone"]
        == profile["real_name"]
        == profile["display_name"]
        == ""
    )
    assert (
        profile["title"] == profile["image_72"] == profile["first_name"] == ""
        and profile["fields"] == {}
    )
    assert profile["team"] == "T1"
    assert users[1]["profile"]["email"] == "bob@example.org"
    assert "alice" not in (root / "users.json").read_text(encoding="utf-8").lower()


def test_erase_with_nothing_found_changes_nothing(root: Path) -> None:
    before = {p: p.read_text(encoding="utf-8") for p in root.rglob("*.json")}
    connector = make(root)
    result = connector.erase(connector.plan_erasure(Subject({"email": {"nobody@example.org"}})))
    assert (result.deleted, result.masked) == (0, 0)
    assert before == {p: p.read_text(encoding="utf-8") for p in root.rglob("*.json")}


def test_plan_items(root: Path) -> None:
    items = {i.ref: i for i in make(root).plan_erasure(ALICE).items}
    assert items[("users", "U1")].action is Action.MASK
    assert items[("random", "1714550400.000500")].action is Action.DELETE


@pytest.mark.parametrize("broken", ["users.json", "channels.json"])
def test_check_reports_missing_or_broken_files(root: Path, broken: str) -> None:
    (root / broken).write_text("{not json", encoding="utf-8")
    result = make(root).check()
    assert not result.ok and broken in result.message
    (root / broken).unlink()
    result = make(root).check()
    assert not result.ok and broken in result.message


def test_config_requires_path() -> None:
    with pytest.raises(ValidationError):
        SlackExportConnector.load_config({})


def test_stop_mid_erase_leaves_whole_files_and_a_rerun_converges(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    connector = make(root)
    plan = connector.plan_erasure(ALICE)
    stop = threading.Event()

    def stop_after_first_file(point: str, _target: str) -> None:
        if point == "temp-written":
            stop.set()

    monkeypatch.setattr(filestore, "crash_point", stop_after_first_file)
    with stop_scope(stop), pytest.raises(Stopped) as stopped:
        connector.erase(plan)
    assert stopped.value.done == ErasureResult(deleted=1), "one day file rewritten, reported"
    assert all(isinstance(read(p), list) for p in root.rglob("*.json")), "every file whole"
    assert not [p for p in root.rglob(".*")], "no temporary file left"
    assert ("users", "U1") in {r.ref for r in connector.find(ALICE)}, "the profile is untouched"
    assert connector.erase(plan) == ErasureResult(deleted=2, masked=1)
    assert list(connector.find(ALICE)) == []


def test_find_removes_abandoned_temporaries_not_live_ones(root: Path) -> None:
    """Leftovers of crashed writes (dsar's own names, and the earlier
    ``.users.json.<random>.tmp`` ones) go; a live writer's locked file stays."""
    alice = (root / "users.json").read_bytes()
    (root / ".users.json.k3j2x9.tmp").write_bytes(alice)
    (root / ".dsar-tmp-abandoned").write_bytes(alice)
    (root / "general" / ".dsar-tmp-abandoned").write_bytes(b"[")
    (root / "notes.txt").write_text("not ours", encoding="utf-8")
    with (root / "random" / ".dsar-tmp-live").open("wb") as live:
        fcntl.flock(live, fcntl.LOCK_EX)
        list(make(root).find(BOB))
        assert sorted(str(p.relative_to(root)) for p in root.rglob(".*")) == [
            "random/.dsar-tmp-live"]
    assert (root / "notes.txt").exists()


def test_erasures_sharing_a_file_take_turns(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Worker threads share one instance: Alice's erasure, paused between
    reading general/2024-05-01.json and writing it back, must not write Bob's
    messages back after Bob's erasure removed them (nor the other way round)."""
    connector = make(root)
    plans = {"alice": connector.plan_erasure(ALICE), "bob": connector.plan_erasure(BOB)}
    paused, resume = threading.Event(), threading.Event()
    write_json = slack_export.write_json

    def pausing(path: Path, data: Any) -> None:
        if threading.current_thread().name == "alice" and not paused.is_set():
            paused.set()
            resume.wait(10)
        write_json(path, data)

    monkeypatch.setattr(slack_export, "write_json", pausing)
    assert not erase_together(connector, plans, paused, resume)
    assert list(connector.find(ALICE)) == [] and list(connector.find(BOB)) == []
    # find cannot see messages whose author's profile is blanked: read the files
    authors = {m.get("user") for day in root.glob("*/*.json") for m in read(day)}
    assert authors == {"U3"}, "a message of Alice or Bob was written back"


def test_an_erasure_waits_for_the_store_and_stops_when_asked(root: Path) -> None:
    connector = make(root)
    plan = connector.plan_erasure(ALICE)
    stop = threading.Event()
    outcome: list[object] = []

    def erase() -> None:
        with stop_scope(stop):
            try:
                outcome.append(connector.erase(plan))
            except Stopped as exc:
                outcome.append(exc)

    with filestore.exclusive(root):  # another erasure of this export is running
        waiting = threading.Thread(target=erase)
        waiting.start()
        waiting.join(0.3)
        assert waiting.is_alive(), "it waits for the other erasure"
        stop.set()
        waiting.join(10)
    assert len(outcome) == 1 and isinstance(outcome[0], Stopped)
    assert outcome[0].done == ErasureResult(), "stopped before changing anything"
    assert len(list(connector.find(ALICE))) == len(plan.items)
