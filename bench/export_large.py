"""One subject with many large messages: the export bundle's time, memory and size.

Writes one part of ``records`` mail-like messages of about ``size`` bytes each
through :class:`PartWriter` (as a connector's export task would), then builds
the bundle with :func:`bundle.build` once per compression setting, each in a
child process of its own, so the peak RSS reported is the build's alone (the
interpreter and dsar's imports included, the part's writing not).

``python -m bench.export_large`` runs this section alone and prints it
(``--records``, ``--size``, ``--compression stored deflate-1 ...``).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dsar.connector import Record
from dsar.models import Request
from dsar.workflow import bundle

REQUEST_ID = "b" * 32
FOLDERS = ("INBOX", "Sent", "Archive", "Support", "Invoices")
#: distinct bodies: more than deflate's 32 KiB window can see at once, so the
#: bodies compress like text, not like repeats
_BODIES = 512


def _request() -> Request:
    return Request(id=REQUEST_ID, kind="access", status="processing",
                   received_at=datetime(2026, 12, 1, 12, 0, tzinfo=UTC),
                   due_at=datetime(2026, 12, 31, 12, 0, tzinfo=UTC))


def _bodies(size: int) -> list[str]:
    """Prose-like text (words of a made-up vocabulary), ``size`` characters each."""
    rng = random.Random(9)  # noqa: S311 - test data, not a secret
    words = ["".join(rng.choice("etaoinshrdlucmfwypvbgkjqxz") for _ in range(rng.randint(2, 9)))
             for _ in range(3000)]
    bodies = []
    for _ in range(_BODIES):
        text: list[str] = []
        length = 0
        while length < size:
            word = rng.choice(words) + (". " if rng.random() < 0.08 else " ")
            text.append(word)
            length += len(word)
        bodies.append("".join(text)[:size])
    return bodies


def write_part(export_dir: Path, records: int, size: int) -> str:
    """The subject's messages as one export task would stage them; the part's name."""
    bodies = _bodies(max(size - 300, 16))  # the headers and JSON make up the rest
    writer = bundle.PartWriter(export_dir, REQUEST_ID, "mail")
    for i in range(records):
        writer.add(Record(FOLDERS[i % len(FOLDERS)], f"<{i}.{i * 7919 % 100_003}@acme.test>",
                          "email",
                          {"from": "Pat Subject <pat.subject@example.org>",
                           "to": f"support{i % 17}@acme.test",
                           "subject": f"Re: order {i * 31 % 99_991} not delivered",
                           "date": f"2026-{i % 12 + 1:02d}-{i % 28 + 1:02d}T10:{i % 60:02d}:00Z",
                           "size": size, "flags": ["seen"] if i % 3 else [],
                           "body": bodies[i % _BODIES]}))
    writer.commit()
    return writer.name


def build_once(export_dir: Path, part: str, compression: str | None) -> dict[str, Any]:
    """Build the bundle in this process: seconds, zip size and this process's peak RSS."""
    options = {} if compression is None else {"compression": compression}
    started = time.perf_counter()
    built = bundle.build(export_dir, _request(), {"mail": part}, [], **options)
    seconds = time.perf_counter() - started
    return {"compression": compression or "default", "build_s": round(seconds, 2),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "zip_mib": round(built.size / 2**20, 1), "records": built.counts["mail"]}


def _measure(export_dir: Path, part: str, compression: str | None) -> dict[str, Any]:
    """:func:`build_once` in a fresh interpreter (an honest peak RSS)."""
    argv = [sys.executable, "-m", "bench.export_large", "--build-only", str(export_dir), part]
    if compression is not None:
        argv += ["--compression", compression]
    done = subprocess.run(argv, check=True, capture_output=True, text=True,  # noqa: S603
                          cwd=Path(__file__).resolve().parent.parent)
    measured: dict[str, Any] = json.loads(done.stdout)
    return measured


def run(records: int = 200_000, size: int = 2048,
        compressions: tuple[str | None, ...] = (None,)) -> dict[str, Any]:
    """The section of the benchmark report: one build per compression setting
    (``None``: the default), all from the same part."""
    with tempfile.TemporaryDirectory(prefix="dsar-bench-export-") as tmp:
        export_dir = Path(tmp)
        started = time.perf_counter()
        part = write_part(export_dir, records, size)
        written = time.perf_counter() - started
        staged = sum(f.stat().st_size for f in bundle.parts_dir(export_dir, REQUEST_ID)
                     .rglob("*") if f.is_file())
        builds = [_measure(export_dir, part, c) for c in compressions]
    for built in builds:
        if built["records"] != records:
            raise SystemExit(f"bench: {built['records']} of {records} records in the bundle")
    return {"records": records, "record_size": size, "part_mib": round(staged / 2**20, 1),
            "part_write_s": round(written, 2), "builds": builds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--compression", nargs="*", default=None,
                        help="settings to compare (default: the default setting only)")
    parser.add_argument("--build-only", nargs=2, metavar=("EXPORT_DIR", "PART"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build_only:
        compression = args.compression[0] if args.compression else None
        print(json.dumps(build_once(Path(args.build_only[0]), args.build_only[1],
                                    compression)))
        return
    compressions = tuple(args.compression) if args.compression else (None,)
    print(json.dumps(run(args.records, args.size, compressions), indent=2))


if __name__ == "__main__":
    main()
