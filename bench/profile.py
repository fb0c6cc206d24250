"""Where ``dsar run`` spends its time: py-spy attached while requests run.

py-spy (``pip install 'dsar-toolkit[bench]'``) samples every thread of the
server process from outside; the raw (collapsed) stacks go to a file and the
summary keeps the functions with the largest share of the samples taken
while a worker thread was busy (idle waits removed).
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.server import DsarServer

IDLE = ("wait (threading.py", "select (selectors.py", "serve_forever", "_worker (concurrent",
        "sleep", "_loop (dsar/executor.py")  # frames of threads with nothing to do
TOP = 15


def py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


@contextlib.contextmanager
def sampling(server: DsarServer, out: Path | None | str) -> Iterator[dict[str, Any]]:
    """Sample ``server`` while the block runs; the summary fills the yielded dict."""
    summary: dict[str, Any] = {}
    spy = py_spy() if out else None
    if not out or server.process is None:
        yield summary
        return
    if spy is None:
        raise SystemExit("bench: --profile needs py-spy: pip install 'dsar-toolkit[bench]'")
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen([spy, "record", "--pid", str(server.process.pid),  # noqa: S603
                                "--rate", "250", "--format", "raw", "--threads", "-o",
                                str(path), "--nonblocking"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield summary
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(60)
    summary.update(summarise(path))


def summarise(path: Path) -> dict[str, Any]:
    """Self and inclusive shares of the busy samples, by function."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    busy = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [f for f in stack.split(";") if not f.startswith("thread (")]
        if not frames or not count.isdigit() or any(i in frames[-1] for i in IDLE):
            continue
        n = int(count)
        busy += n
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    ours = [(f, c) for f, c in inclusive.most_common() if "(dsar/" in f or "(connectors/" in f]
    share = (lambda c: round(100 * c / busy, 1)) if busy else (lambda c: 0.0)
    return {"busy_samples": busy, "file": str(path),
            "self_pct": {f: share(c) for f, c in own.most_common(TOP)},
            "inclusive_pct": {f: share(c) for f, c in inclusive.most_common(3 * TOP)},
            "ours_inclusive_pct": {f: share(c) for f, c in ours[:2 * TOP]}}
