"""The leader (Ethyca Fides) on this machine, in the same run as dsar.

Uses ``../shared/fides-bench/`` as it is (``DSAR_BENCH_FIDES_KIT`` to point
elsewhere): its ``bench.py`` is imported at run time for the dataset, the
policies (``setup``) and the timing of one request (``run_one``); nothing of
it is copied here. Like its ``run.sh``, we install ``ethyca-fides`` in a venv
of its own under a work dir outside the repository
(``DSAR_BENCH_WORK``, default ``$TMPDIR/fides-bench``, kept between runs),
start Redis on 56379 and Fides (uvicorn, Celery eager) on 58080, both on
127.0.0.1; Fides's own database and the shop it reads are on the benchmark's
PostgreSQL, so both tools read the very same rows. Only what we started is
stopped.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg

from bench.server import Pg

REPO = Path(__file__).resolve().parent.parent
KIT = Path(os.environ.get("DSAR_BENCH_FIDES_KIT") or REPO.parent / "shared" / "fides-bench")
WORK = Path(os.environ.get("DSAR_BENCH_WORK")
            or Path(os.environ.get("TMPDIR") or tempfile.gettempdir()) / "fides-bench")
VERSION = os.environ.get("FIDES_VERSION", "2.78.2")  # newest for Python 3.11 (run.sh)
REDIS_PORT, FIDES_PORT = 56379, 58080
FIDES_DB = "dsar_bench_fides"


def kit() -> ModuleType:
    """The kit's bench.py, or exit non-zero saying why."""
    if not (KIT / "bench.py").exists():
        raise SystemExit(f"bench-compare: the leader's kit is not at {KIT} (the "
                         "../shared/fides-bench/ folder beside the checkout, or set "
                         "DSAR_BENCH_FIDES_KIT); nothing to compare with")
    return _load(KIT / "bench.py")  # as its own module: our package is also "bench"


def _load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("fides_kit_bench", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"bench-compare: cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def install(say: Any = print) -> float | None:
    """Install ethyca-fides into WORK/venv unless it is there; seconds taken
    (None: it was there already)."""
    venv = WORK / "venv"
    if (venv / "bin" / "uvicorn").exists() and _has_fides(venv):
        return None
    WORK.mkdir(parents=True, exist_ok=True)
    say(f"installing ethyca-fides=={VERSION} into {venv} (once; a few minutes)")
    started = time.monotonic()
    if not (venv / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)  # noqa: S603
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q",  # noqa: S603
                    f"ethyca-fides=={VERSION}"], check=True)
    took = time.monotonic() - started
    say(f"installed in {took:.0f} s")
    return took


def _has_fides(venv: Path) -> bool:
    probe = subprocess.run([str(venv / "bin" / "python"), "-c", "import fides"],  # noqa: S603
                           capture_output=True, check=False)
    return probe.returncode == 0


def _config(pg: Pg) -> Path:
    """fides.toml as run.sh writes it, pointed at our PostgreSQL."""
    path = WORK / "dsar-bench-fides.toml"
    path.write_text(f"""[database]
server = "{pg.host}"
port = "{pg.port}"
user = "postgres"
password = "postgres"
db = "{FIDES_DB}"

[redis]
host = "127.0.0.1"
port = {REDIS_PORT}
password = ""
enabled = true

[security]
env = "prod"
app_encryption_key = "benchbenchbenchbenchbenchbench12"
oauth_root_client_id = "fidesadmin"
oauth_root_client_secret = "fidesadminsecret"
cors_origins = ["http://127.0.0.1:{FIDES_PORT}"]

[execution]
require_manual_request_approval = false
subject_identity_verification_required = false

[celery]
task_always_eager = true

[user]
analytics_opt_out = true

[logging]
level = "WARNING"
""")
    return path


@contextlib.contextmanager
def leader(pg: Pg, say: Any = print) -> Iterator[tuple[ModuleType, Any, int]]:
    """Fides running: (the kit's bench module, its API client, the server's pid)."""
    module = kit()
    install(say)
    with psycopg.connect(f"{pg.dsn} dbname=postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{FIDES_DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{FIDES_DB}"')
    logs = WORK / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "FIDES__CONFIG_PATH": str(_config(pg))}
    with _process(["redis-server", "--bind", "127.0.0.1", "--port", str(REDIS_PORT),
                   "--save", "", "--appendonly", "no"], logs / "redis.log", env), \
         _process([str(WORK / "venv" / "bin" / "uvicorn"), "fides.api.main:app", "--host",
                   "127.0.0.1", "--port", str(FIDES_PORT), "--log-level", "warning"],
                  logs / "fides.log", env, cwd=WORK) as fides:
        started = time.monotonic()
        _wait_health(fides)
        say(f"leader: Fides {VERSION} up in {time.monotonic() - started:.0f} s")
        module.BASE = f"http://127.0.0.1:{FIDES_PORT}/api/v1"
        module.PG = {"host": pg.host, "port": pg.port, "username": "postgres",
                     "password": "postgres"}
        yield module, module.Api("fidesadmin", "fidesadminsecret"), fides.pid
    with psycopg.connect(f"{pg.dsn} dbname=postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{FIDES_DB}" WITH (FORCE)')


@contextlib.contextmanager
def _process(cmd: list[str], log_path: Path, env: dict[str, str],
             cwd: Path | None = None) -> Iterator[subprocess.Popen[bytes]]:
    with log_path.open("ab") as log:
        process = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=log,  # noqa: S603
                                   stderr=log, stdin=subprocess.DEVNULL)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_health(process: subprocess.Popen[bytes], seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"bench-compare: Fides exited (log: {WORK / 'logs' / 'fides.log'})")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{FIDES_PORT}/health",
                                        timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise SystemExit("bench-compare: Fides did not answer /health in time")


class Turns:
    """The leader's requests, one after each of dsar's (same kind)."""

    def __init__(self, module: ModuleType, api: Any, pid: int, db: str,
                 subjects: Any) -> None:
        self.module, self.api, self.pid, self.subjects = module, api, pid, subjects
        module.setup(api, db)
        self.rows: dict[str, list[dict[str, Any]]] = {"access": [], "erasure": []}

    def warm_up(self) -> None:
        for kind in ("access", "erasure"):
            self._one(kind)

    def _one(self, kind: str) -> dict[str, Any]:
        row: dict[str, Any] = self.module.run_one(self.api, self.pid, f"bench_{kind}",
                                                  self.subjects.take(1)[0])
        if row["status"] != "complete":
            raise SystemExit(f"bench-compare: the leader's {kind} request ended {row['status']}")
        return row

    def __call__(self, kind: str) -> None:
        self.rows[kind].append(self._one(kind))

    def summary(self) -> dict[str, Any]:
        from bench import drive

        out: dict[str, Any] = {}
        for kind, rows in self.rows.items():
            server = [r["server_created_to_finished_s"] for r in rows]
            out[kind] = {**drive.summary(server),
                         "wall": drive.summary([r["wall_s"] for r in rows]),
                         "peak_rss_mb": max(r["peak_rss_mb"] for r in rows)}
        return out
