"""dsar/workflow/lease.py where `make mutate` found it loose: claiming one named task (the
Celery executor's way), releasing a task (only that task, only while it is ours, due again
after the delay), the heartbeat's one log line per outage, which task a claim takes first
(and none under a request no longer processing), and the heartbeat's thread: named, a
daemon, waking every half second to pass a shutdown on. The runtime's clock is moved,
never slept past; the heartbeat's thread is waited for on an event."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import exc, select, update

from dsar.clock import MovableClock
from dsar.models import Request, Task, WorkerRole
from dsar.runtime import Runtime
from dsar.workflow import lease
from dsar.workflow import requests as flow

START = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)


def processing(rt: Runtime, *emails: str) -> list[int]:
    """A verified access request per email: their tasks, pending and due."""
    with rt.transaction() as session:
        for email in emails:
            request = flow.submit(session, rt, "access", {"email": [email]})
            flow.mark_verified(session, rt, request, actor="test", method="test")
    with rt.transaction() as session:
        return list(session.scalars(select(Task.id).order_by(Task.id)))


def task(rt: Runtime, task_id: int) -> Task:
    with rt.transaction() as session:
        found = session.get(Task, task_id)
        assert found is not None
        session.expunge(found)
        return found


@pytest.fixture
def clock(rt: Runtime) -> MovableClock:
    rt.settings["TASK_LEASE_SECONDS"] = 10.0
    moved = rt.clock = MovableClock(START)
    return moved


def test_claim_task_takes_the_named_task_under_a_lease(rt: Runtime, clock: MovableClock) -> None:
    first, second = processing(rt, "a@example.org", "b@example.org")
    assert lease.claim_task(rt, second, "w:1") is True
    claimed = task(rt, second)
    assert (claimed.status, claimed.lease_owner, claimed.attempts, claimed.reclaims) == \
        ("running", "w:1", 1, 0)
    assert claimed.lease_expires_at == START + timedelta(seconds=10)
    assert task(rt, first).status == "pending"  # the oldest was not the one named
    assert lease.claim_task(rt, second, "w:2") is False  # held under a live lease
    assert lease.claim_task(rt, 10_000, "w:2") is False  # no such task


def test_claim_task_takes_over_a_lapsed_lease_as_a_reclaim(rt: Runtime,
                                                           clock: MovableClock) -> None:
    [task_id] = processing(rt, "a@example.org")
    assert lease.claim_task(rt, task_id, "w:1")
    clock.advance(seconds=10)
    assert lease.claim_task(rt, task_id, "w:2") is False  # still live at its last instant
    clock.advance(microseconds=1)
    assert lease.claim_task(rt, task_id, "w:2") is True
    taken = task(rt, task_id)
    assert (taken.lease_owner, taken.attempts, taken.reclaims) == ("w:2", 1, 1)


def test_claim_task_waits_for_a_task_not_due_yet(rt: Runtime, clock: MovableClock) -> None:
    [task_id] = processing(rt, "a@example.org")
    with rt.transaction() as session:
        found = session.get(Task, task_id)
        assert found is not None
        found.not_before = START + timedelta(seconds=5)
    assert lease.claim_task(rt, task_id, "w:1") is False
    clock.advance(seconds=5)
    assert lease.claim_task(rt, task_id, "w:1") is True


def test_release_hands_back_only_that_task_and_only_while_ours(
        rt: Runtime, clock: MovableClock) -> None:
    first, second = processing(rt, "a@example.org", "b@example.org")
    assert lease.claim_task(rt, first, "w:1") and lease.claim_task(rt, second, "w:1")
    lease.release(rt, first, "w:other")  # not ours: nothing happens
    assert task(rt, first).lease_owner == "w:1"
    lease.release(rt, first, "w:1", delay_seconds=3)
    released = task(rt, first)
    assert (released.status, released.lease_owner, released.lease_expires_at) == \
        ("pending", None, None)
    assert released.not_before == START + timedelta(seconds=3)
    assert (task(rt, second).status, task(rt, second).lease_owner) == ("running", "w:1")
    lease.release(rt, second, "w:1")
    assert task(rt, second).not_before == START + timedelta(seconds=1)  # the default delay
    assert lease.claim(rt, "w:2") is None  # neither is due yet
    clock.advance(seconds=1)
    assert lease.claim(rt, "w:2") == second


def test_release_leaves_a_task_that_is_no_longer_running(rt: Runtime,
                                                         clock: MovableClock) -> None:
    [task_id] = processing(rt, "a@example.org")
    assert lease.claim_task(rt, task_id, "w:1")
    with rt.transaction() as session:
        found = session.get(Task, task_id)
        assert found is not None
        found.status = "succeeded"  # its outcome recorded, the owner column left as it was
    lease.release(rt, task_id, "w:1")
    assert task(rt, task_id).status == "succeeded"


def test_heartbeat_logs_an_outage_once_and_again_after_a_recovery(
        rt: Runtime, clock: MovableClock, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """Renewals fail (the database down), fail, work, then fail for good (a bug): one
    line for each outage. A failed renewal is retried at the next wake-up; a working one
    waits a quarter of the lease (2.5 s) by the clock."""
    [task_id] = processing(rt, "a@example.org")
    assert lease.claim_task(rt, task_id, "w:1")
    down = exc.OperationalError("SELECT 1", {}, Exception("server closed the connection"))
    answers: list[Exception | None] = [down, down, None, ValueError("bug")]
    calls = [threading.Event() for _ in answers]
    count = 0

    def renew(rt_: Runtime, task_id_: int, owner: str) -> None:
        nonlocal count
        assert (rt_, task_id_, owner) == (rt, task_id, "w:1")
        index, count = min(count, len(answers) - 1), count + 1
        calls[index].set()
        answer = answers[index]
        if answer is not None:
            raise answer

    monkeypatch.setattr(lease, "renew", renew)
    caplog.set_level(logging.WARNING, logger=lease.__name__)
    with lease.Heartbeat(rt, task_id, "w:1") as beat:
        assert beat.interval == 2.5
        clock.advance(seconds=2.5)
        assert calls[2].wait(10), "the heartbeat did not renew again after failing"
        assert not calls[3].is_set()  # renewed: the next one is 2.5 s away by the clock
        clock.advance(seconds=2.5)
        assert calls[3].wait(10), "the heartbeat did not renew"
        assert not beat.lost.is_set() and not beat.stop.is_set()
    assert [r.getMessage() for r in caplog.records] == [
        f"task {task_id}: lease not renewed (app database unavailable); retrying",
        f"task {task_id}: lease not renewed (ValueError); retrying"]


def test_renew_extends_only_that_running_task_of_ours(rt: Runtime, clock: MovableClock) -> None:
    first, second = processing(rt, "a@example.org", "b@example.org")
    assert lease.claim_task(rt, first, "w:1") and lease.claim_task(rt, second, "w:1")
    clock.advance(seconds=4)
    lease.renew(rt, first, "w:1")
    assert task(rt, first).lease_expires_at == START + timedelta(seconds=14)
    assert task(rt, second).lease_expires_at == START + timedelta(seconds=10)
    with pytest.raises(lease.LeaseLost) as lost:
        lease.renew(rt, first, "w:2")
    assert lost.value.args == (first,)
    with rt.transaction() as session:
        ended = session.get(Task, second)
        assert ended is not None
        ended.status = "succeeded"  # recorded; the owner column left as it was
    with pytest.raises(lease.LeaseLost):
        lease.renew(rt, second, "w:1")
    assert task(rt, second).lease_expires_at == START + timedelta(seconds=10)


@pytest.mark.parametrize(("running", "overdue", "given_up"), [
    (60.0, False, False),  # TASK_MAX_SECONDS, to the instant: not past it
    (60.5, True, False),   # past it: the call is asked to stop
    (70.0, True, False),   # a lease (10 s) later, to the instant: still waited for
    (70.5, True, True),    # then the task fails without the call
], ids=["at the maximum", "past it", "a lease later", "past that"])
def test_the_heartbeat_asks_a_task_past_its_maximum_to_stop_then_gives_up(
        rt: Runtime, clock: MovableClock, running: float, overdue: bool,
        given_up: bool) -> None:
    rt.settings["TASK_MAX_SECONDS"] = 60.0
    failed: list[bool] = []
    clock.advance(seconds=100)  # the task starts some time after the clock's start
    beat = lease.Heartbeat(rt, 1, "w:1", on_overdue=lambda: failed.append(True))
    clock.advance(seconds=min(running, 60.5))
    assert beat._past_deadline() is False  # the first look past it only asks
    assert (beat.overdue, beat.stop.is_set()) == (overdue, overdue)
    clock.advance(seconds=running - min(running, 60.5))
    assert beat._past_deadline() is given_up
    assert (bool(failed), beat.lost.is_set()) == (given_up, given_up)


def test_without_on_overdue_the_heartbeat_only_asks(rt: Runtime, clock: MovableClock) -> None:
    rt.settings["TASK_MAX_SECONDS"] = 60.0
    clock.advance(seconds=100)
    beat = lease.Heartbeat(rt, 1, "w:1")
    clock.advance(seconds=61)
    assert beat._past_deadline() is False and beat.overdue
    clock.advance(seconds=3600)
    assert beat._past_deadline() is False and not beat.lost.is_set()


def role_holder(rt: Runtime, name: str) -> tuple[str | None, datetime | None]:
    with rt.transaction() as session:
        role = session.scalars(select(WorkerRole).where(WorkerRole.name == name)).one()
        return role.holder, role.expires_at


def test_a_role_is_held_for_its_seconds_then_free_and_dropped_by_its_holder_only(
        rt: Runtime, clock: MovableClock) -> None:
    with rt.transaction() as session:
        session.add(WorkerRole(name="other"))  # another role, which none of this touches
    assert lease.hold_role(rt, "housekeeping", "w:a", 10) is True
    assert role_holder(rt, "housekeeping") == ("w:a", START + timedelta(seconds=10))
    assert role_holder(rt, "other") == (None, None)
    assert lease.hold_role(rt, "housekeeping", "w:b", 10) is False
    clock.advance(seconds=4)
    assert lease.hold_role(rt, "housekeeping", "w:a", 10) is True  # kept: ten more seconds
    assert role_holder(rt, "housekeeping") == ("w:a", START + timedelta(seconds=14))
    clock.advance(seconds=10)
    assert lease.hold_role(rt, "housekeeping", "w:b", 10) is False  # to the instant: still a's
    clock.advance(microseconds=1)
    assert lease.hold_role(rt, "housekeeping", "w:b", 10) is True
    lease.drop_role(rt, "housekeeping", "w:a")  # not a's any more: nothing happens
    assert role_holder(rt, "housekeeping")[0] == "w:b"
    assert lease.hold_role(rt, "other", "w:b", 10) is True
    lease.drop_role(rt, "housekeeping", "w:b")
    assert role_holder(rt, "housekeeping") == (None, None)
    assert role_holder(rt, "other")[0] == "w:b"
    assert lease.hold_role(rt, "housekeeping", "w:a", 10) is True


def test_the_next_renewal_counts_from_the_time_the_last_one_was_made_for(
        rt: Runtime, clock: MovableClock, monkeypatch: pytest.MonkeyPatch) -> None:
    """The clock moves on while a renewal is being written (a slow database, a busy
    machine): the renewal counts from the moment it was made for, so the next one is due
    a quarter of the lease (2.5 s) after that moment, not after the write returned. (Seen
    as a test_leases flake under load: a heartbeat that renewed late never renewed again
    on a clock that then moved by exactly one interval.)"""
    [task_id] = processing(rt, "a@example.org")
    assert lease.claim_task(rt, task_id, "w:1")
    calls = [threading.Event() for _ in range(2)]
    count = 0

    def renew(rt_: Runtime, task_id_: int, owner: str) -> None:
        nonlocal count
        count += 1
        if count == 1:
            clock.advance(seconds=1)  # one second passes while the first renewal is written
        calls[min(count, 2) - 1].set()

    monkeypatch.setattr(lease, "renew", renew)
    with lease.Heartbeat(rt, task_id, "w:1"):
        clock.advance(seconds=2.5)
        assert calls[0].wait(10), "the heartbeat did not renew"
        clock.advance(seconds=1.5)  # 2.5 s after the first renewal's moment, 1.5 after its end
        assert calls[1].wait(10), "the next renewal waited for 2.5 s after the write returned"


def test_the_oldest_due_task_is_claimed_first_whatever_its_id(rt: Runtime,
                                                              clock: MovableClock) -> None:
    """Due time first (a task sent back for later waits behind one due earlier), then
    age: a lapsed lease is taken over before a pending task due at the same time."""
    first, second, third = processing(rt, "a@example.org", "b@example.org", "c@example.org")
    with rt.transaction() as session:
        later = session.get(Task, first)
        assert later is not None
        later.not_before = START + timedelta(seconds=1)
    clock.advance(seconds=2)
    assert lease.claim(rt, "w:1") == second  # due at START, before first's START + 1 s
    clock.advance(seconds=10, microseconds=1)  # second's lease (10 s) ran out
    assert lease.claim(rt, "w:2") == second  # taken over: due at START, like third
    assert task(rt, second).reclaims == 1
    assert lease.claim(rt, "w:2") == third
    assert lease.claim(rt, "w:2") == first


def test_no_task_of_a_request_that_is_no_longer_processing_is_claimed(
        rt: Runtime, clock: MovableClock) -> None:
    """An open task left under a request that has moved on (written by hand, by an older
    version) is never run: the request's state decides, not the task's alone."""
    [task_id] = processing(rt, "a@example.org")
    with rt.transaction() as session:
        session.execute(update(Request).values(status="cancelled"))
    assert lease.claim(rt, "w:1") is None
    assert lease.claim_task(rt, task_id, "w:1") is False
    assert task(rt, task_id).status == "pending"


class Watched(MovableClock):
    """Tells when a thread other than the test's read the clock: the heartbeat woke and
    looked whether a renewal is due (the time is read before it is told)."""

    def __init__(self, start: datetime) -> None:
        super().__init__(start)
        self.looked = threading.Event()

    def monotonic(self) -> float:
        value = super().monotonic()
        if threading.current_thread() is not threading.main_thread():
            self.looked.set()
        return value


@pytest.fixture
def watched(rt: Runtime, clock: MovableClock) -> Watched:
    moved = rt.clock = Watched(START)
    return moved


def test_a_heartbeat_with_nothing_due_keeps_waking_and_renews_once_due(
        rt: Runtime, watched: Watched, monkeypatch: pytest.MonkeyPatch) -> None:
    renewed = threading.Event()
    monkeypatch.setattr(lease, "renew", lambda *_args: renewed.set())
    with lease.Heartbeat(rt, 1, "w:1"):
        assert watched.looked.wait(10), "the heartbeat never woke"  # nothing due yet
        watched.advance(seconds=2.5)
        assert renewed.wait(10), "the heartbeat stopped after a wake-up with nothing due"


def test_a_shutdown_reaches_the_running_call_within_a_wake_up(
        rt: Runtime, watched: Watched) -> None:
    """The heartbeat wakes every half second, whatever the lease (here 10 s: a renewal
    every 2.5 s), so a stopping worker's connector call is asked to stop at once."""
    shutdown = threading.Event()
    with lease.Heartbeat(rt, 1, "w:1", shutdown=shutdown) as beat:
        assert watched.looked.wait(10), "the heartbeat never woke"
        shutdown.set()  # just after a wake-up: the next is half a second away
        assert beat.stop.wait(1.2), "the shutdown waited for a renewal's interval"


def test_a_heartbeat_runs_in_a_named_daemon_thread(rt: Runtime, clock: MovableClock) -> None:
    """Named after its task in a thread dump; a daemon, so a worker process that ends
    while a connector call hangs is not kept alive by a thread renewing that call's
    lease for ever."""
    with lease.Heartbeat(rt, 7, "w:1"):
        [thread] = [t for t in threading.enumerate() if t.name == "dsar-heartbeat-7"]
        assert thread.daemon and thread.is_alive()
    assert not thread.is_alive()
