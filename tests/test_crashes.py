"""Real crashes: ``dsar requests process`` killed with SIGKILL at exact moments
(fault points) and at random ones, then started again, on the demo stores.

The promises: no request is lost, no export is released incomplete, every
erasure is done once and recorded, a dead worker's task is taken up within
seconds, and the audit chain stays intact.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from dsar.connector import Subject
from dsar.registry import load_connectors
from tests.support.workers import (
    Instance,
    finish,
    kill,
    make_instance,
    store_state,
)

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def expected_counts(instance: Instance, email: str) -> dict[str, int]:
    """What each demo store holds of ``email``, counted by its connector."""
    connectors = load_connectors(str(instance.info.connector_file))
    try:
        return {name: sum(1 for _ in c.find(Subject({"email": [email]})))
                for name, c in connectors.items()}
    finally:
        for connector in connectors.values():
            connector.close()


def test_a_crash_before_the_export_is_released_rebuilds_it_complete(tmp_path: Path) -> None:
    instance = make_instance(tmp_path / "instance", TASK_LEASE_SECONDS="1")
    email = instance.info.emails[0]
    request_id = instance.submit("access", email)
    code, out = finish(instance.worker(faults="bundle.written=kill"))
    assert code == -9, out  # killed with the zip written, its release not committed
    assert instance.show(request_id)["status"] == "processing"
    instance.expire_leases()  # this test is about the export, not the take-over
    code, out = finish(instance.worker())
    assert code == 0, out
    view = instance.show(request_id)
    assert view["status"] == "completed"
    counts = instance.manifest_counts(request_id)
    assert counts == expected_counts(instance, email)
    assert all(counts.values()), counts  # every store has records of a demo customer
    assert not (instance.path / "exports" / request_id).exists()  # parts removed after release
    instance.audit_verify()


def test_a_crash_after_the_release_leaves_no_parts_behind(tmp_path: Path) -> None:
    instance = make_instance(tmp_path / "instance", TASK_LEASE_SECONDS="1")
    email = instance.info.emails[1]
    request_id = instance.submit("access", email)
    code, out = finish(instance.worker(faults="bundle.released=kill"))
    assert code == -9, out
    assert instance.show(request_id)["status"] == "completed"
    assert instance.manifest_counts(request_id) == expected_counts(instance, email)
    assert (instance.path / "exports" / request_id / "parts").is_dir()  # the crash left them
    instance.expire_leases()  # the dead process's housekeeping role included
    code, out = finish(instance.worker())  # the new holder's first chores
    assert code == 0, out
    assert not (instance.path / "exports" / request_id).exists()


def test_a_dead_workers_task_is_taken_up_within_seconds(tmp_path: Path) -> None:
    """Default lease: a worker killed after its connector call is replaced by
    a process started right after the crash, which waits instead of saying
    there is no work, and the take-over is not counted as an attempt."""
    instance = make_instance(tmp_path / "instance")
    request_id = instance.submit("access", instance.info.emails[2])
    code, out = finish(instance.worker(faults="task.before_complete=kill"))
    assert code == -9, out
    started = time.monotonic()
    code, out = finish(instance.worker())
    recovery = time.monotonic() - started
    assert code == 0, out
    assert "task(s) running under other workers" in out  # one or both of its threads' tasks
    assert recovery < 15, f"recovered in {recovery:.1f} s"
    view = instance.show(request_id)
    assert view["status"] == "completed"
    taken = [t for t in view["tasks"] if t["reclaims"]]
    assert taken and all((t["reclaims"], t["attempts"]) == (1, 1) for t in taken), taken
    shown = instance.dsar("requests", "show", request_id).stdout
    assert "reclaims=1" in shown
    instance.audit_verify()


def test_random_kills_change_nothing_but_time(tmp_path: Path) -> None:
    """About 20 SIGKILLs at random moments over erasures, then accesses (two
    phases, so accesses see every erasure in both runs): every request ends
    completed, the stores and the exports end exactly as in a run nobody
    interrupted, and the audit chain is intact."""
    calm = make_instance(tmp_path / "calm", customers=6, TASK_LEASE_SECONDS="1")
    rough = make_instance(tmp_path / "rough", customers=6, TASK_LEASE_SECONDS="1",
                          TASK_MAX_RECLAIMS="1000")
    rng = random.Random(20261202)  # noqa: S311 - a repeatable test, not a secret
    ids: dict[str, list[str]] = {"calm": [], "rough": []}
    kills = 0
    for kind, people in (("erasure", (1, 3, 4)), ("access", (0, 2, 5, 1))):
        for name, instance in (("calm", calm), ("rough", rough)):
            ids[name] += [instance.submit(kind, instance.info.emails[i]) for i in people]
        code, out = finish(calm.worker())
        assert code == 0, out
        kills += kill_repeatedly(rough, rng, 10)
        code, out = finish(rough.worker())
        assert code == 0, out
    for name, instance in (("calm", calm), ("rough", rough)):
        for request_id in ids[name]:
            assert instance.show(request_id)["status"] == "completed", (name, request_id)
        instance.audit_verify()
    assert store_state(rough.info) == store_state(calm.info)
    for calm_id, rough_id in list(zip(ids["calm"], ids["rough"], strict=True))[3:]:
        assert rough.manifest_counts(rough_id) == calm.manifest_counts(calm_id)
    assert kills >= 15, f"only {kills} kills landed: the loop tests too little"


def kill_repeatedly(instance: Instance, rng: random.Random, times: int) -> int:
    """Start a worker and SIGKILL it at a random moment, ``times`` times or
    until one finishes first; returns how many were killed."""
    for done in range(times):
        # a pause after each connector call widens the windows a kill can land in
        proc = instance.worker(faults="task.before_complete=sleep:0.3")
        time.sleep(rng.uniform(0.4, 1.6))
        if proc.poll() is not None:
            return done
        kill(proc)
    return times
