"""Drive requests through dsar's JSON API as an integrator would, and read
their latency from the server's own rows.

One request: ``POST /api/v1/requests``, the code read from the ``.eml`` the
server wrote to its outbox, ``POST …/verify``, then ``GET …`` until the
request is final. The time reported is the server's own, verified →
completed (``requests.verified_at`` → ``closed_at`` in the app database), so
the client's polling is not counted.
"""

from __future__ import annotations

import email
import json
import re
import statistics
import time
import urllib.request
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

FINAL = {"completed", "partially_failed", "denied", "expired", "cancelled"}
CODE = re.compile(r"\b(\d{6})\b")


class Client:
    """The API of one running dsar server, and its outbox."""

    def __init__(self, base: str, outbox: Path, database_url: str,
                 deliver: Callable[[], int] | None = None,
                 wait_for_server_mail: float = 2.0) -> None:
        self.api = base + "/api/v1"
        self.outbox = outbox
        self.engine = create_engine(database_url)
        #: hands queued mail over when the server does not (see code_for)
        self.deliver = deliver
        self._notices: set[str] = set()
        self._grace = wait_for_server_mail

    def close(self) -> None:
        self.engine.dispose()

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None,
              token: str | None = None) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.api + path, data=data, method=method)  # noqa: S310
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(req, timeout=60) as answer:  # noqa: S310 - loopback
            result: dict[str, Any] = json.loads(answer.read())
            return result

    def code_for(self, address: str) -> str:
        """The code mailed to ``address`` (its .eml is removed). One request
        per address at a time. A file without a Subject yet is being written
        by the server's mailer thread: it is read again, never taken for a
        notice."""
        started = time.monotonic()
        while time.monotonic() < started + 60:  # workers deliver mail (dsar.outbox)
            if self.deliver is not None and time.monotonic() > started + self._grace:
                if self._grace:
                    _warn_once("dsar run wrote no code within 2 s: the bench hands the "
                               "outbox table's mail over itself (dsar.outbox.deliver_due)")
                self.deliver()
            for path in self.outbox.glob("*.eml"):
                if path.name in self._notices:
                    continue
                try:
                    message = email.message_from_bytes(path.read_bytes())
                except FileNotFoundError:  # another client thread took it
                    continue
                if message["Subject"] is None:  # still being written: look again
                    continue
                found = CODE.search(str(message["Subject"]))
                if found is None:  # a notice, not a code
                    self._notices.add(path.name)
                elif message["To"] == address:
                    path.unlink(missing_ok=True)
                    return found.group(1)
            time.sleep(0.01)
        raise SystemExit(f"bench: no code in {self.outbox} for a request")

    def submit_verified(self, kind: str, address: str) -> tuple[str, str]:
        """Submit and verify; (id, status token)."""
        made = self._call("POST", "/requests", {"kind": kind, "email": address})
        rid, token = made["id"], made["status_token"]
        self._call("POST", f"/requests/{rid}/verify", {"code": self.code_for(address)}, token)
        return rid, token

    def wait(self, rid: str, token: str, timeout: float = 600, poll: float = 0.02) -> str:
        """Wait until the request is final, then read its status through the API.

        Waiting reads the app database, not the API: polling a 2-core server
        over HTTP took a sixth of its CPU away from the work being measured.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            row = self.rows([rid]).get(rid)
            if row is not None and row[0] in FINAL:
                return str(self._call("GET", f"/requests/{rid}", token=token)["status"])
            time.sleep(poll)
        raise SystemExit(f"bench: a request was not final after {timeout:.0f} s")

    def one(self, kind: str, address: str) -> float:
        """One request alone: its server-side seconds, verified → completed."""
        rid, token = self.submit_verified(kind, address)
        status = self.wait(rid, token)
        if status != "completed":
            raise SystemExit(f"bench: a {kind} request ended {status}: {self.errors(rid)}")
        return self.latencies([rid])[rid]

    def errors(self, rid: str) -> list[tuple[str, str, str]]:
        """(connector, step, last error) of a request's failed tasks."""
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(
                "SELECT connector, step, last_error FROM tasks WHERE request_id = :r "
                "AND status <> 'succeeded'"), {"r": rid})]  # type: ignore[misc]

    def rows(self, ids: Iterable[str]) -> dict[str, tuple[str, datetime, datetime | None]]:
        """status, verified_at, closed_at by request id, from the app database."""
        wanted = list(ids)
        out: dict[str, tuple[str, datetime, datetime | None]] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start:start + 500]
                params = {f"i{n}": v for n, v in enumerate(chunk)}
                names = ", ".join(f":i{n}" for n in range(len(chunk)))
                query = text("SELECT id, status, verified_at, closed_at FROM requests "  # noqa: S608
                             f"WHERE id IN ({names})")
                for rid, status, verified, closed in conn.execute(query, params):
                    out[rid] = (status, _aware(verified), _aware(closed) if closed else None)
        return out

    def latencies(self, ids: Iterable[str]) -> dict[str, float]:
        return {rid: (closed - verified).total_seconds()
                for rid, (_s, verified, closed) in self.rows(ids).items() if closed}


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        print(f"  note: {message}", flush=True)


def _aware(value: Any) -> datetime:
    """Naive UTC: SQLite hands back naive UTC datetimes (or strings),
    PostgreSQL aware ones in the session's time zone."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None)


def intake(client: Client, kind: str, addresses: list[str], threads: int = 4) -> list[str]:
    """Submit and verify many requests (``threads`` clients); their ids."""
    with ThreadPoolExecutor(threads) as pool:
        return [rid for rid, _token in pool.map(lambda a: client.submit_verified(kind, a),
                                                  addresses)]


def wait_all(client: Client, ids: list[str], timeout: float = 1800) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = client.rows(ids)
        left = [rid for rid, (status, *_r) in rows.items() if status not in FINAL]
        if not left:
            failed = [s for s, *_r in rows.values() if s != "completed"]
            if failed:
                raise SystemExit(f"bench: {len(failed)} queued requests did not complete")
            return
        time.sleep(0.2)
    raise SystemExit(f"bench: queued requests not final after {timeout:.0f} s")


def throughput(client: Client, ids: list[str]) -> dict[str, Any]:
    """Requests per second: n over the span from the first verification to
    the last completion, from the server's rows."""
    rows = client.rows(ids).values()
    first = min(v for _s, v, _c in rows)
    last = max(c for _s, _v, c in rows if c)
    span = (last - first).total_seconds()
    return {"requests": len(ids), "seconds": round(span, 2),
            "requests_per_s": round(len(ids) / span, 1) if span > 0 else None}


def summary(seconds: list[float]) -> dict[str, Any]:
    """Median and p95 in ms."""
    ms = sorted(s * 1000 for s in seconds)
    p95 = ms[min(len(ms) - 1, max(0, round(0.95 * len(ms)) - 1))]
    return {"n": len(ms), "median_ms": round(statistics.median(ms), 1),
            "p95_ms": round(p95, 1), "max_ms": round(ms[-1], 1)}
