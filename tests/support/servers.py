"""What the test servers' modules share: ports, env vars, scratch dirs, cleanup, exits.

``tests/support/postgres.py``, ``mariadb.py`` and ``redis.py`` each find a running
server or start a throwaway one; how a server is probed, started and stopped stays in
its own module. This module holds only what they do alike:

* ``choose_server(...)``: the policy all three follow (``ENV=host:port`` that server or
  exit 3, ``ENV=start`` a throwaway, unset: the probe address if it answers, else a
  throwaway);
* ``free_port()``, ``parse_hostport(value, env_name)``: where a server listens;
* ``probe_until(attempt, deadline_s, retry, errors)``: the probe's retry loop, and
  ``wait_until_answers(process, answers, timeout_s)``: the start-up wait, and
  ``started(server, answers, timeout_s)``: that wait, killing a server that never answers;
* ``new_scratch(prefix, pid_file, base)``: a fresh scratch dir, after removing stale ones
  (``remove_stale_scratch``) left by killed runs;
* ``stop_process(process, sig, timeout_s)``: stop a child server, killing it if it hangs;
* ``register_cleanup(server)`` / ``stop_server(server)``: one registry that stops every
  throwaway server once, at exit or on SIGTERM (then dies of SIGTERM, or hands it to
  the handler that was there before), unless its module stopped it first;
* ``exit_tests(message)`` / ``start_or_exit(...)``: end the run with exit code 3 saying
  what to install (tests that need a server are never skipped);
* ``add_report_line(line)``, ``pytest_report_header``: the one header hook, one line per
  server. It is re-exported by ``postgres.py`` (whose ``__all__`` always had it);
  ``check_unique_hooks`` guards the conftest against two modules exporting different
  hooks under one name (pytest looks hooks up by name: the last import would win).
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any, Generic, NoReturn, Protocol, TypeVar

import pytest

EXIT_CODE = 3  # what every module exits with when its server is missing or broken
STALE_AFTER_S = 600  # a younger scratch dir may belong to a run starting right now
POLL_S = 0.25  # pause between two probe attempts


class Stoppable(Protocol):
    """A server that the registry can stop; ``stop()`` must be idempotent."""

    def stop(self) -> None: ...


S = TypeVar("S")


class LazyServer(Protocol):
    """What :class:`Lazy` needs of a server: a label for the header, whether
    the tests started it, and a way to stop it."""

    throwaway: bool

    @property
    def label(self) -> str: ...

    def stop(self) -> None: ...


L = TypeVar("L", bound=LazyServer)


# ------------------------------------------------------------------ which server


def choose_server(
    env_target: str,
    env_probe: str,
    default_probe: str,
    at: Callable[[str, int], S],
    probe: Callable[[S, float, bool], str | None],
    start: Callable[[], S],
    no_answer: str,
) -> S:
    """The server the tests use, as ``env_target`` and ``env_probe`` say.

    * ``env_target=host:port``: ``at(host, port)`` if ``probe(server, 3.0, True)``
      answers, else exit 3 with ``"<no_answer> within 3 s (<error>)"`` and what to do.
    * ``env_target=start``: ``start()`` (a throwaway server).
    * unset: ``at(host, port)`` for ``env_probe`` (default ``default_probe``) if one
      attempt of ``probe`` (2 s) answers, else ``start()``.

    ``probe`` returns None when the server answers, else the error.
    """
    target = os.environ.get(env_target, "").strip()
    if target == "start":
        return start()
    if target:
        host, port = parse_hostport(target, env_target)
        server = at(host, port)
        error = probe(server, 3.0, True)
        if error:
            exit_tests(
                f"{env_target}={target}: {no_answer} within 3 s ({error}). Unset it to use "
                f"{default_probe} or a throwaway server, or set {env_target}=start."
            )
        return server
    host, port = parse_hostport(os.environ.get(env_probe, default_probe), env_probe)
    server = at(host, port)
    if probe(server, 2.0, False) is None:
        return server
    return start()


# ---------------------------------------------------------------- where it listens


def free_port() -> int:
    """A loopback TCP port nobody listens on right now (it may be taken before use)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def parse_hostport(value: str, env_name: str) -> tuple[str, int]:
    """``host:port`` from the env var ``env_name``; exit 3 if it is not that shape."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        exit_tests(f"{env_name}={value!r}: expected host:port (or 'start')")
    return host, int(port)


# ------------------------------------------------------------------ does it answer


def describe_error(exc: BaseException) -> str:
    """``ExcType: first line of the message``, for one-line reports."""
    first_line = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first_line}"


def probe_until(
    attempt: Callable[[float], None],
    deadline_s: float,
    retry: bool,
    errors: tuple[type[BaseException], ...],
) -> str | None:
    """None once ``attempt(seconds_left)`` returns, else the last error described.

    ``attempt`` raises one of ``errors`` when the server does not answer (other
    exceptions propagate). With retry=False one attempt is made: a refused connection
    answers at once. Otherwise attempts repeat every 0.25 s until the deadline.
    """
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            attempt(deadline - time.monotonic())
            return None
        except errors as exc:
            error = describe_error(exc)
        if not retry or time.monotonic() + POLL_S >= deadline:
            return error
        time.sleep(POLL_S)


def wait_until_answers(
    process: subprocess.Popen[bytes], answers: Callable[[], bool], timeout_s: float
) -> bool:
    """True as soon as ``answers()`` does, False if ``process`` exits or time runs out."""
    deadline = time.monotonic() + timeout_s
    while process.poll() is None and time.monotonic() < deadline:
        if answers():
            return True
    return False


def started(server: Any, answers: Callable[[], bool], timeout_s: float) -> bool:
    """Wait for ``server.process`` (just started) to answer; if it does not in
    time, kill and reap it and clear ``server.process`` (the caller may retry
    on another port)."""
    if wait_until_answers(server.process, answers, timeout_s):
        return True
    proc, server.process = server.process, None
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)
    return False


# ------------------------------------------------------------------- scratch dirs


def remove_stale_scratch(base: str | Path, prefix: str, pid_file: str) -> None:
    """Remove ``base/prefix*`` dirs left by killed runs.

    A dir is removed only if it is older than 10 minutes and its server is gone: no
    ``pid_file`` (relative to the dir), or no process with the pid written in it. A dir
    that cannot be read, or whose server belongs to someone else, is kept.
    """
    for path in Path(base).glob(f"{prefix}*"):
        try:
            if time.time() - path.stat().st_mtime < STALE_AFTER_S:
                continue  # maybe another run starting right now
            pid_path = path / pid_file
            if pid_path.exists():
                os.kill(int(pid_path.read_text().split()[0]), 0)
                continue  # its server still runs
        except ProcessLookupError:
            pass
        except (OSError, ValueError, IndexError):
            continue
        shutil.rmtree(path, ignore_errors=True)


def new_scratch(prefix: str, pid_file: str, base: str) -> Path:
    """A fresh ``base/prefix*`` dir, after removing stale ones (``remove_stale_scratch``)."""
    remove_stale_scratch(base, prefix, pid_file)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base))


# ---------------------------------------------------------------------- stopping


def stop_process(
    process: subprocess.Popen[bytes] | None, sig: int, timeout_s: float
) -> None:
    """Send ``sig`` to a still-running child and reap it; SIGKILL after ``timeout_s``."""
    if process is not None and process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


_owned: list[Stoppable] = []
_handlers_installed = False


def register_cleanup(server: Stoppable) -> None:
    """Make sure ``server`` is stopped at exit or on SIGTERM, whatever happens.

    The first call installs one ``atexit`` function and one SIGTERM handler for all
    servers (SIGTERM skips atexit, pytest_unconfigure and fixture teardown). The
    handler stops every registered server, then puts the previous handler back and
    calls it, or, if there was none, dies of SIGTERM as asked. An ignored SIGTERM
    stays ignored.
    """
    global _handlers_installed
    if not _handlers_installed:
        _handlers_installed = True
        atexit.register(stop_all)
        previous = signal.getsignal(signal.SIGTERM)

        def on_sigterm(signum: int, frame: FrameType | None) -> None:
            stop_all()
            signal.signal(signal.SIGTERM, previous if callable(previous) else signal.SIG_DFL)
            if callable(previous):
                previous(signum, frame)
            else:
                os.kill(os.getpid(), signal.SIGTERM)

        if previous in (signal.SIG_DFL, None) or callable(previous):
            signal.signal(signal.SIGTERM, on_sigterm)
    _owned.append(server)


def stop_server(server: Stoppable) -> None:
    """Stop ``server`` now and forget it (its module's own end-of-session cleanup)."""
    if server in _owned:
        _owned.remove(server)
    server.stop()


def stop_all() -> None:
    """Stop every registered server, newest first; each is stopped once."""
    while _owned:
        _owned.pop().stop()


# ------------------------------------------------------------------ exit code 3


def exit_tests(message: str) -> NoReturn:
    """End the whole run with exit code 3 and ``message`` (never skip the tests)."""
    pytest.exit(message, returncode=EXIT_CODE)


def start_or_exit(
    server: Stoppable, start: Callable[[], None], what: str, log: Path, hint: str
) -> None:
    """Run ``start()``; if it raises, stop ``server`` and exit 3.

    The message names ``what`` failed and why, ends with the last 2000 characters of
    ``log`` (read before stopping removes the scratch dir) and the install ``hint``.
    """
    try:
        start()
    except Exception as exc:
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        server.stop()
        exit_tests(f"could not start a throwaway {what}: {exc}\n{tail}\nHint: {hint}")


# ----------------------------------------------------------------- report header

_report_lines: list[Callable[[], str]] = []


def add_report_line(line: Callable[[], str]) -> None:
    """Add ``line()`` to the header pytest prints above the tests (not with -q)."""
    _report_lines.append(line)


def pytest_report_header(config: pytest.Config) -> list[str]:
    """One line per server module, in import order: where its server is."""
    return [line() for line in _report_lines]


def throwaway_or_running(throwaway: bool) -> str:
    """How a server's label says whether the tests own it."""
    return "throwaway, started by the tests" if throwaway else "running"


def check_unique_hooks(*modules: ModuleType) -> None:
    """Fail if two of ``modules`` export different ``pytest_*`` hooks under one name.

    They are star-imported into one conftest, where pytest finds hooks by name: the
    later import would silently replace the earlier hook.
    """
    seen: dict[str, tuple[str, object]] = {}
    for module in modules:
        for name in getattr(module, "__all__", ()):
            if not name.startswith("pytest_"):
                continue
            hook = getattr(module, name)
            first = seen.setdefault(name, (module.__name__, hook))
            if first[1] is not hook:
                raise RuntimeError(
                    f"{module.__name__} and {first[0]} both export {name}: only one "
                    "would be called; define it once (see tests/support/servers.py)"
                )


class Lazy(Generic[L]):
    """A server chosen only when a collected test needs it (a collection hook
    calls :meth:`decide`) or when its session fixture is asked for directly.

    ``choose`` finds or starts the server; ``require`` checks the client
    library first (exiting 3 when it is missing). The header line says which
    server was chosen, or that none is chosen yet.
    """

    def __init__(self, name: str, env_target: str, choose: Callable[[], L],
                 require: Callable[[], None]) -> None:
        self.name, self.env_target = name, env_target
        self._choose, self._require = choose, require
        self.server: L | None = None
        add_report_line(self.report_line)

    def report_line(self) -> str:
        """The header line (printed before collection: usually not chosen yet)."""
        if self.server is not None:
            return f"{self.name}: {self.server.label}"
        target = os.environ.get(self.env_target, "").strip()
        setting = f"{self.env_target}={target}" if target else f"{self.env_target} unset"
        return f"{self.name}: chosen after collection, if a test needs it ({setting})"

    def decide(self, needed: bool) -> L:
        """Choose the server now if ``needed`` and not chosen yet."""
        if self.server is None and needed:
            self._require()
            self.server = self._choose()
        return self.server  # type: ignore[return-value]

    def session(self) -> Iterator[L]:
        """The body of the session fixture: the server, stopped at the end
        when the tests started it."""
        yield self.decide(True)
        server, self.server = self.server, None
        if server is not None and server.throwaway:
            stop_server(server)
