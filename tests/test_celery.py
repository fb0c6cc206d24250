"""The Celery executor against real brokers (Redis and RabbitMQ): real worker
processes (``celery -A dsar.celery_executor worker`` and ``dsar worker``) on
the demo stores; requests submitted by ``dsar requests submit`` publish their
tasks. A SIGKILLed worker's task completes exactly once; a lost message is
republished by the one sweeper."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import create_engine, select, update

from dsar import create_app
from dsar.celery_executor import install_publisher, uninstall_publisher
from dsar.config import ConfigError, load_settings
from dsar.database import utcnow
from dsar.models import Task, WorkerRole
from dsar.runtime import Runtime
from dsar.workflow import lease
from tests.support.engine_connectors import Script
from tests.support.rabbitmq import RabbitMqServer
from tests.support.redis import RedisServer
from tests.support.workers import DSAR, Instance, make_instance, store_state, wait_for
from tests.test_engine import actions, submit, tasks_of, two_stores

CELERY = str(Path(DSAR).with_name("celery"))


@dataclass
class Broker:
    kind: str
    url: str
    queue: str


@pytest.fixture(params=["redis", "rabbitmq"])
def broker(request: pytest.FixtureRequest, redis_server: RedisServer,
           rabbitmq_server: RabbitMqServer) -> Iterator[Broker]:
    """A broker URL and a queue of this test's own, deleted afterwards."""
    url = redis_server.url(13) if request.param == "redis" else rabbitmq_server.url()
    queue = f"dsar-test-{os.getpid()}-{secrets.token_hex(4)}"
    yield Broker(request.param, url, queue)
    _delete_queue(url, queue)


def _delete_queue(url: str, queue: str) -> None:
    """Drop the test's queue, its exchange and (Redis) the unacknowledged
    messages a killed worker left in the transport's shared hash."""
    from kombu import Connection, Exchange, Queue

    with Connection(url, connect_timeout=5) as conn:
        channel = conn.default_channel
        Queue(queue, Exchange(queue), routing_key=queue)(channel).delete()
        Exchange(queue)(channel).delete()
        client = getattr(channel, "client", None)
        if client is not None:  # kombu's Redis transport: "unacked" hash + index
            for tag, raw in client.hgetall("unacked").items():
                if json.loads(raw)[2] == queue:
                    client.hdel("unacked", tag)
                    client.zrem("unacked_index", tag)


def celery_instance(path: Path, broker: Broker, **settings: str) -> Instance:
    return make_instance(path, EXECUTOR="celery", BROKER_URL=broker.url,
                         CELERY_QUEUE=broker.queue, TASK_LEASE_SECONDS="1", **settings)


class Worker:
    """A Celery worker process (its own process group), logging to a file."""

    def __init__(self, instance: Instance, log: Path, faults: str = "",
                 command: str = "celery") -> None:
        self.log = log
        queue = instance.settings["CELERY_QUEUE"]
        args = ([CELERY, "-A", "dsar.celery_executor", "worker", "--pool=threads", "-c", "2",
                 "-Q", queue, "--without-gossip", "--without-mingle", "--without-heartbeat",
                 "-l", "INFO"] if command == "celery" else [DSAR, "worker", "--workers", "2"])
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(args, env=instance.env(faults),
                                         stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        return self.proc.returncode


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for worker in started:
        worker.stop()


def status(instance: Instance, request_id: str) -> str:
    return str(instance.show(request_id)["status"])


def test_a_request_completes_through_celery(tmp_path: Path, broker: Broker,
                                            workers: list[Worker]) -> None:
    """Nothing polls: only the published messages can get the tasks run."""
    instance = celery_instance(tmp_path / "instance", broker)
    command = "celery" if broker.kind == "redis" else "dsar"  # both ways to start one
    workers.append(Worker(instance, tmp_path / "worker.log", command=command))
    access = instance.submit("access", instance.info.emails[0])
    erasure = instance.submit("erasure", instance.info.emails[1])
    for request_id in (access, erasure):
        wait_for(lambda r=request_id: status(instance, r) == "completed", 30, step=0.2)
    view = instance.show(access)
    assert all((t["attempts"], t["reclaims"]) == (1, 0) for t in view["tasks"]), view
    assert "republished" not in workers[0].output()  # delivered, not swept
    assert workers[0].stop() == 0, workers[0].output()
    instance.audit_verify()


def _reference_erasure(path: Path, email: str) -> dict[str, Any]:
    """The stores after the same erasure, run by the in-process executor uninterrupted."""
    instance = make_instance(path)
    request_id = instance.submit("erasure", email)
    done = instance.dsar("requests", "process", "--timeout", "60")
    assert done.returncode == 0, done.stdout + done.stderr
    assert status(instance, request_id) == "completed"
    return store_state(instance.info)


def test_a_killed_celery_worker_leaves_a_task_that_completes_once(
        tmp_path: Path, broker: Broker, workers: list[Worker]) -> None:
    """SIGKILL right after a connector call (the erasure is done, not yet
    recorded): a new worker takes the task up as a reclaim, not an attempt,
    and the stores end as an uninterrupted run leaves them."""
    instance = celery_instance(tmp_path / "instance", broker)
    email = instance.info.emails[2]
    crashing = Worker(instance, tmp_path / "crash.log", faults="task.before_complete=kill")
    workers.append(crashing)
    request_id = instance.submit("erasure", email)
    wait_for(lambda: crashing.proc.poll() is not None, 30, step=0.1)
    assert crashing.proc.returncode == -signal.SIGKILL, crashing.output()
    assert status(instance, request_id) == "processing"
    workers.append(Worker(instance, tmp_path / "worker.log"))
    wait_for(lambda: status(instance, request_id) == "completed", 30, step=0.2)
    tasks = instance.show(request_id)["tasks"]
    taken = [t for t in tasks if t["reclaims"]]
    assert taken, tasks
    assert all(t["attempts"] == 1 and t["reclaims"] in (0, 1) for t in tasks), tasks
    assert store_state(instance.info) == _reference_erasure(tmp_path / "reference", email)
    instance.audit_verify()


def test_a_lost_message_is_republished_by_the_one_sweeper(
        tmp_path: Path, broker: Broker, workers: list[Worker]) -> None:
    """A request whose tasks were committed with no publisher (as if their
    messages were lost) completes: of two worker processes, exactly one holds
    the housekeeping role and republishes them."""
    instance = celery_instance(tmp_path / "instance", broker)
    instance.settings["EXECUTOR"] = "inprocess"  # submit without publishing
    request_id = instance.submit("access", instance.info.emails[3])
    instance.settings["EXECUTOR"] = "celery"
    assert status(instance, request_id) == "processing"
    workers += [Worker(instance, tmp_path / f"worker-{n}.log") for n in range(2)]
    wait_for(lambda: status(instance, request_id) == "completed", 30, step=0.2)
    swept = [w for w in workers if "republished" in w.output()]
    assert len(swept) == 1, [w.output()[-2000:] for w in workers]
    engine = create_engine(f"sqlite:///{instance.path / 'dsar.db'}")
    try:
        with engine.connect() as conn:
            holder = conn.scalar(select(WorkerRole.holder).where(
                WorkerRole.name == "housekeeping"))
    finally:
        engine.dispose()
    assert holder is not None and holder.endswith(":sweeper")
    tasks = instance.show(request_id)["tasks"]
    assert all((t["attempts"], t["reclaims"]) == (1, 0) for t in tasks), tasks


# --- in-process: the claim, the settings, the publisher ------------------------------------


def _set_task(rt: Runtime, task_id: int, **values: Any) -> None:
    with rt.transaction() as session:
        session.execute(update(Task).where(Task.id == task_id).values(**values))


def test_claim_task_takes_a_named_task_only_when_runnable(
        make_app: Callable[..., Flask], scripts: dict[str, Script]) -> None:
    """The rules of lease.claim for one task: pending and due, or a lease that
    ran out (a reclaim: counted on the task, for its outcome's audit event);
    never done, not due, or held. A claim records no audit event."""
    rt = make_app(two_stores(scripts)).extensions["dsar"]
    request_id = submit(rt)
    trail = actions(rt, request_id)
    task = tasks_of(rt, request_id)[0]
    _set_task(rt, task.id, not_before=utcnow() + timedelta(seconds=60))
    assert not lease.claim_task(rt, task.id, "w:not-due")
    _set_task(rt, task.id, not_before=utcnow())
    assert lease.claim_task(rt, task.id, "w:first")
    assert not lease.claim_task(rt, task.id, "w:second")  # a live lease
    _set_task(rt, task.id, lease_expires_at=utcnow() - timedelta(seconds=1))
    assert lease.claim_task(rt, task.id, "w:third")
    again = next(t for t in tasks_of(rt, request_id) if t.id == task.id)
    assert (again.lease_owner, again.attempts, again.reclaims) == ("w:third", 1, 1)
    assert actions(rt, request_id) == trail
    _set_task(rt, task.id, status="succeeded", lease_owner=None, lease_expires_at=None)
    assert not lease.claim_task(rt, task.id, "w:fourth")
    assert not lease.claim_task(rt, 10**9, "w:fifth")  # no such task


def test_celery_needs_a_broker(tmp_path: Path) -> None:
    settings = {"SECRET_KEY": "s" * 40, "EXECUTOR": "celery",
                "DATABASE_URL": f"sqlite:///{tmp_path / 'dsar.db'}"}
    with pytest.raises(ConfigError, match="DSAR_BROKER_URL"):
        create_app(settings)
    with pytest.raises(ConfigError, match="DSAR_EXECUTOR: expected inprocess or celery"):
        load_settings({"DSAR_EXECUTOR": "threads"}, settings, str(tmp_path))


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_retry_is_published_with_its_countdown(
        make_app: Callable[..., Flask], scripts: dict[str, Script],
        redis_server: RedisServer) -> None:
    """A commit publishes one message per runnable task; a task due later goes
    with that ETA; one due beyond the horizon waits for the sweeper."""
    queue = f"dsar-test-{os.getpid()}-{secrets.token_hex(4)}"
    url = redis_server.url(13)
    rt = make_app(two_stores(scripts), EXECUTOR="celery", BROKER_URL=url,
                  CELERY_QUEUE=queue).extensions["dsar"]
    client = redis_server.client(13)
    try:
        request_id = submit(rt)  # discover or work tasks: one message each
        published = [json.loads(m) for m in client.lrange(queue, 0, -1)]
        ids = sorted(m["headers"]["argsrepr"] for m in published)
        assert ids == sorted(f"[{t.id}]" for t in tasks_of(rt, request_id))
        assert all(m["headers"]["eta"] is None for m in published)
        client.delete(queue)
        task = tasks_of(rt, request_id)[0]
        publisher = install_publisher(rt)
        soon = utcnow() + timedelta(seconds=30)
        assert publisher.publish(task.id, soon)
        eta = json.loads(client.lpop(queue))["headers"]["eta"]
        assert abs((datetime.fromisoformat(eta) - soon).total_seconds()) < 2
        assert not publisher.publish(task.id, utcnow() + timedelta(hours=1))
        assert client.llen(queue) == 0
    finally:
        uninstall_publisher(rt)
        client.close()
        _delete_queue(url, queue)


def test_a_verification_code_is_sent_by_a_celery_worker(
        tmp_path: Path, broker: Broker, workers: list[Worker]) -> None:
    """No in-process executor anywhere: the commit that queued the code
    publishes dsar.deliver_mail and a Celery worker sends it (as an .eml
    file: development, no SMTP)."""
    from dsar.workflow import verification

    instance = celery_instance(tmp_path / "instance", broker)
    workers.append(Worker(instance, tmp_path / "worker.log"))
    settings = {k[len("DSAR_"):]: v for k, v in instance.env().items() if k.startswith("DSAR_")}
    settings.update(ERASURE_REVIEW=False, TASK_LEASE_SECONDS=1.0,
                    DATABASE_URL=f"sqlite:///{instance.path / 'dsar.db'}",
                    OUTBOX_DIR=str(instance.path / "outbox"))
    rt = create_app(settings).extensions["dsar"]
    outbox = Path(rt.settings["OUTBOX_DIR"])
    try:
        with rt.transaction() as session:
            verification.receive(session, rt, "access", instance.info.emails[0])
        wait_for(lambda: outbox.is_dir() and any(outbox.glob("*.eml")), 20, step=0.1)
    finally:
        uninstall_publisher(rt)
        rt.close()
    assert len(list(outbox.glob("*.eml"))) == 1
    assert "Task dsar.deliver_mail[" in workers[0].output()
