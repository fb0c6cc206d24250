"""Portal submit throughput over the API, in the production layout.

Starts gunicorn (``--workers 2`` on ``wsgi.py``, ``DSAR_ENV=production``) on a
fresh PostgreSQL app database, with rate-limit counters in Redis (logical
database ``--redis-db``, limits raised so that nothing is refused; our keys
are deleted afterwards) and ``DSAR_SMTP_URL`` pointing to an aiosmtpd sink
this process runs. By default no ``dsar worker`` runs: the outbox table just
fills (one code mail per submission), so the figures are the web tier's
alone; ``--with-worker`` adds one ``dsar worker`` sending to the sink (it
competes for the same CPU).

The load comes from ``--clients`` processes on this machine, each with one
keep-alive ``http.client`` connection, firing ``POST /api/v1/requests``
(access, a distinct address each) back to back: ``--warmup`` submissions,
then ``--submissions`` measured ones started together. Reported: throughput
(measured submissions over the span from the first send to the last answer),
p50/p95/p99/max latency, and the check that none was lost or duplicated:
every answer a 202 with a distinct id, and the app database holding exactly
one request, one identifier and one queued code mail per submission.

    .venv/bin/python -m bench.submit_load                     # 1000 after 200, 8 clients
    .venv/bin/python -m bench.submit_load --threads 4         # gunicorn gthread, 4 threads
    .venv/bin/python -m bench.submit_load --profile out/      # py-spy on the gunicorn workers
    .venv/bin/python -m bench.submit_load --json

``run(...)`` returns the same figures as a dict (for bench/__main__.py).
PostgreSQL comes from :func:`bench.server.postgres` (``DSAR_BENCH_PG``).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg

from bench.profile import py_spy, summarise
from bench.runs import app_database
from bench.server import Pg, dsar_command, free_port, postgres

ROOT = Path(__file__).resolve().parents[1]
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))
SECRET = "bench-submit-" + "x" * 40
TARGET = {"submissions_per_s": 300, "p99_ms": 100}
DOMAIN = "load.bench.example"


# -- the servers ----------------------------------------------------------------------------


class SmtpSink:
    """An aiosmtpd server on a free loopback port that accepts and counts mail."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.received = 0
        self.port = free_port()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, _server: Any, _session: Any, _envelope: Any) -> str:
        self.received += 1
        return "250 OK"

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def __enter__(self) -> SmtpSink:
        self._controller.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._controller.stop()


@contextlib.contextmanager
def redis_url(url: str | None, db: int) -> Iterator[str]:
    """The Redis for rate limits: ``url``, else 127.0.0.1:6379 if it answers,
    else a throwaway ``redis-server``. Our keys are deleted at the end."""
    import redis

    if url is None and _pings("redis://127.0.0.1:6379"):
        url = "redis://127.0.0.1:6379"
    with contextlib.ExitStack() as stack:
        if url is None:
            url = stack.enter_context(_throwaway_redis())
        full = f"{url.rstrip('/')}/{db}"
        client = redis.Redis.from_url(full)
        before = set(client.scan_iter(match="LIMITS*"))
        try:
            yield full
        finally:
            ours = set(client.scan_iter(match="LIMITS*")) - before
            if ours:
                client.delete(*ours)
            client.close()


def _pings(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=2).ping())
    except redis.RedisError:
        return False


@contextlib.contextmanager
def _throwaway_redis() -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("bench: no Redis answers on 127.0.0.1:6379 and no redis-server: "
                         "apt-get install -y redis-server, or pass --redis URL")
    port, scratch = free_port(), tempfile.mkdtemp(prefix="dsar-bench-redis-")
    process = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1",  # noqa: S603
                                "--save", "", "--appendonly", "no", "--dir", scratch],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"redis://127.0.0.1:{port}"
        _until(lambda: _pings(url), process, "redis-server")
        yield url
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(scratch, ignore_errors=True)


def _until(ready: Any, process: subprocess.Popen[bytes], what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not ready():
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"bench: {what} did not start")
        time.sleep(0.1)


def environment(root: Path, database_url: str, redis: str, smtp: str) -> dict[str, str]:
    """The production settings of every process of the layout."""
    from dsar.demo import seed

    connectors = seed(root / "stores", customers=2).connector_file  # never searched here
    env = {k: v for k, v in os.environ.items() if not k.startswith("DSAR_")}
    env.update({"DSAR_ENV": "production", "DSAR_SECRET_KEY": SECRET,
                "DSAR_DATABASE_URL": database_url, "DSAR_RATELIMIT_STORAGE_URI": redis,
                "DSAR_SMTP_URL": smtp, "DSAR_CONNECTORS": str(connectors),
                "DSAR_INSTANCE_PATH": str(root / "instance"),
                "DSAR_EXPORT_DIR": str(root / "exports"), "DSAR_LOG_LEVEL": "WARNING",
                "DSAR_RATE_LIMIT_SUBMIT": "100000000 per hour",
                "DSAR_RATE_LIMIT_VERIFY": "100000000 per hour",
                "DSAR_RATE_LIMIT_RESEND": "100000000 per hour"})
    return env


@contextlib.contextmanager
def layout(root: Path, env: dict[str, str], workers: int, threads: int,
           with_worker: bool) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """Migrated database, gunicorn (and a ``dsar worker``): (port, gunicorn master)."""
    done = subprocess.run([*dsar_command(), "db", "upgrade"], env=env,  # noqa: S603
                          capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"bench: dsar db upgrade failed:\n{done.stderr[-3000:]}")
    port = free_port()
    command = [GUNICORN, "--workers", str(workers), "--bind", f"127.0.0.1:{port}"]
    if threads > 1:
        command += ["--worker-class", "gthread", "--threads", str(threads)]
    procs = [_start([*command, "wsgi:app"], env, root / "gunicorn.log")]
    if with_worker:
        procs.append(_start([*dsar_command(), "worker", "--grace", "5"], env,
                            root / "worker.log"))
    try:
        try:
            _until(lambda: _answers(port), procs[0], "gunicorn")
        except SystemExit as exc:
            log = (root / "gunicorn.log").read_text(errors="replace")[-3000:]
            raise SystemExit(f"{exc}:\n{log}") from None
        yield port, procs[0]
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(command, cwd=ROOT, env=env,  # noqa: S603
                                stdin=subprocess.DEVNULL, stdout=out, stderr=out)


def _answers(port: int) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        conn.request("GET", "/")
        ok = conn.getresponse().status == 200
        conn.close()
        return ok
    except OSError:
        return False


# -- the load -------------------------------------------------------------------------------


def _client(port: int, emails: list[str], start: Any, out: Any) -> None:
    """One client process: submit each address in turn on one keep-alive
    connection; puts (send time, seconds, status, id) per submission."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Content-Type": "application/json", "Connection": "keep-alive"}
    bodies = [json.dumps({"kind": "access", "email": e}).encode() for e in emails]
    results = []
    start.wait()
    for body in bodies:
        sent = time.perf_counter()
        try:
            conn.request("POST", "/api/v1/requests", body, headers)
            answer = conn.getresponse()
            raw = answer.read()
            status = answer.status
        except (OSError, http.client.HTTPException):
            conn.close()  # reconnects on the next request
            raw, status = b"", 0
        took = time.perf_counter() - sent
        rid = json.loads(raw).get("id") if status == 202 else None
        results.append((sent, took, status, rid))
    conn.close()
    out.put(results)


def fire(port: int, emails: list[str], clients: int) -> list[tuple[float, float, int, str]]:
    """Every address submitted once by ``clients`` processes started together."""
    ctx = multiprocessing.get_context("fork")
    start, out = ctx.Event(), ctx.Queue()
    shares = [emails[i::clients] for i in range(clients)]
    procs = [ctx.Process(target=_client, args=(port, share, start, out)) for share in shares]
    for proc in procs:
        proc.start()
    time.sleep(0.5)  # every client connected and waiting
    start.set()
    results = [r for _ in procs for r in out.get(timeout=600)]
    for proc in procs:
        proc.join(30)
    return results


def figures(results: list[tuple[float, float, int, str]]) -> dict[str, Any]:
    """Throughput over the span from first send to last answer; latency percentiles."""
    ms = sorted(took * 1000 for _s, took, _st, _id in results)
    span = max(s + t for s, t, _st, _id in results) - min(s for s, *_r in results)

    def pct(p: float) -> float:
        return round(ms[min(len(ms) - 1, max(0, round(p * len(ms)) - 1))], 1)

    statuses: dict[str, int] = {}
    for _s, _t, status, _id in results:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    return {"submissions": len(results), "seconds": round(span, 2),
            "submissions_per_s": round(len(results) / span, 1),
            "p50_ms": pct(0.50), "p95_ms": pct(0.95), "p99_ms": pct(0.99),
            "max_ms": round(ms[-1], 1), "statuses": statuses}


def kept(pg_dsn: str, db: str, ids: list[str], expected: int) -> dict[str, Any]:
    """What the app database holds after ``expected`` accepted submissions
    (warm-up included): requests, identifiers, queued code mails, audit events."""
    with psycopg.connect(f"{pg_dsn} dbname={db}") as conn:
        def one(query: str) -> Any:
            row = conn.execute(query).fetchone()
            return None if row is None else row[0]

        rows = one("SELECT count(*) FROM requests")
        found = set(one("SELECT array_agg(id) FROM requests") or [])
        distinct_emails = one("SELECT count(DISTINCT digest) FROM subject_identifiers "
                              "WHERE kind = 'email'")
        mails = one("SELECT count(*) FROM outbox_mails WHERE kind = 'verification-code'")
        events = one("SELECT count(*) FROM audit_events")
    answered = [i for i in ids if i]
    return {"accepted": len(answered), "requests_rows": rows,
            "distinct_emails": distinct_emails, "outbox_mails": mails, "audit_events": events,
            "lost": len(set(answered) - found) + max(0, expected - rows),
            "duplicated": (len(answered) - len(set(answered))) + max(0, rows - expected),
            "ok": rows == distinct_emails == mails == expected == len(set(answered))
                  and set(answered) <= found}


def chain_intact(env: dict[str, str]) -> bool:
    """``dsar audit verify`` over the app database after the load."""
    done = subprocess.run([*dsar_command(), "audit", "verify"], env=env,  # noqa: S603
                          capture_output=True, text=True, check=False)
    return done.returncode == 0


# -- profiling ------------------------------------------------------------------------------


@contextlib.contextmanager
def sampling(master: subprocess.Popen[bytes], out: Path | None) -> Iterator[dict[str, Any]]:
    """py-spy on gunicorn and its workers while the block runs (raw stacks to ``out``)."""
    summary: dict[str, Any] = {}
    spy = py_spy() if out else None
    if out is None or spy is None:
        yield summary
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen([spy, "record", "--pid", str(master.pid),  # noqa: S603
                                "--subprocesses", "--rate", "200", "--format", "raw",
                                "-o", str(out), "--nonblocking"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1)  # attached before the load starts
        yield summary
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(60)
        if out.exists():
            summary.update(summarise(out))


# -- one run --------------------------------------------------------------------------------


def run(submissions: int = 1000, warmup: int = 200, clients: int = 8, workers: int = 2,
        threads: int = 1, with_worker: bool = False, redis: str | None = None,
        redis_db: int = 11, profile: Path | None = None, pg: Pg | None = None) -> dict[str, Any]:
    """One measured run in a fresh layout; the results JSON section."""
    with contextlib.ExitStack() as stack:
        pg = pg or stack.enter_context(postgres(say=lambda _m: None))
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="dsar-submit-")))
        url = stack.enter_context(app_database(pg, "postgresql", root, "submit_load"))
        limits = stack.enter_context(redis_url(redis, redis_db))
        sink = stack.enter_context(SmtpSink())
        env = environment(root, url, limits, sink.url)
        port, master = stack.enter_context(layout(root, env, workers, threads, with_worker))
        warm = fire(port, [f"warm-{i}@{DOMAIN}" for i in range(warmup)], clients)
        with sampling(master, profile) as top:
            results = fire(port, [f"load-{i}@{DOMAIN}" for i in range(submissions)], clients)
        measured = figures(results)
        check = kept(pg.dsn, url.rsplit("/", 1)[1], [r[3] for r in warm + results],
                     warmup + submissions)
        check["audit_chain_intact"] = chain_intact(env)
        check["ok"] = check["ok"] and check["audit_chain_intact"]
    measured.update({
        "layout": {"gunicorn_workers": workers, "worker_class": "gthread" if threads > 1
                   else "sync", "threads": threads, "clients": clients, "warmup": warmup,
                   "app_database": "postgresql", "ratelimit_storage": "redis",
                   "dsar_worker": with_worker, "mail_sent": sink.received if with_worker
                   else None, "cpus": os.cpu_count()},
        "check": check, "target": TARGET,
        "meets_target": check["ok"] and measured["submissions_per_s"] >= TARGET[
            "submissions_per_s"] and measured["p99_ms"] <= TARGET["p99_ms"]})
    if top:
        measured["profile"] = top
    return measured


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.submit_load",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--submissions", type=int, default=1000)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--clients", type=int, default=8, help="client processes")
    p.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    p.add_argument("--threads", type=int, default=1,
                   help="threads per gunicorn worker (>1: --worker-class gthread)")
    p.add_argument("--with-worker", action="store_true",
                   help="also run a dsar worker sending the codes to the SMTP sink")
    p.add_argument("--redis", default=None, help="redis://host:port (default: 127.0.0.1:6379 "
                   "if it answers, else a throwaway redis-server)")
    p.add_argument("--redis-db", type=int, default=11)
    p.add_argument("--profile", type=Path, default=None,
                   help="py-spy the gunicorn workers during the measured run; raw stacks here")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    result = run(args.submissions, args.warmup, args.clients, args.workers, args.threads,
                 args.with_worker, args.redis, args.redis_db, args.profile)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    lay, check = result["layout"], result["check"]
    print(f"gunicorn {lay['gunicorn_workers']} x {lay['worker_class']} ({lay['threads']} "
          f"threads), {lay['clients']} clients: {result['submissions']} submissions in "
          f"{result['seconds']} s = {result['submissions_per_s']}/s; p50 {result['p50_ms']} "
          f"p95 {result['p95_ms']} p99 {result['p99_ms']} max {result['max_ms']} ms; "
          f"statuses {result['statuses']}")
    print(f"kept: {check['requests_rows']} requests, {check['distinct_emails']} addresses, "
          f"{check['outbox_mails']} code mails, audit chain intact: {check['audit_chain_intact']}; "
          f"lost {check['lost']}, duplicated {check['duplicated']}; "
          f"target met: {result['meets_target']}")
    if "profile" in result:
        print(json.dumps(result["profile"]["self_pct"], indent=1))


if __name__ == "__main__":
    main()
