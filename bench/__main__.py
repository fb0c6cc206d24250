"""``make bench`` (``python -m bench``) and ``make bench-compare`` (``--compare``).

Builds the shop workload in PostgreSQL (``bench/shop.py``), starts real
``dsar run`` servers on it (``bench/server.py``), drives requests through the
JSON API (``bench/drive.py``) and reads each one's time, verified →
completed, from the server's own rows. Reports median and p95 of access and
erasure on the shop (sql only) and on the demo stores (sql + maildir +
slack), on a SQLite and a PostgreSQL app database; the 1M/10k ratio with
``--large``; the throughput of queued access requests; then the console's
queue over 100,000 requests (``bench/console.py``); the audit trail's page and
checks over 1,000,000 events (``bench/audit_trail.py``); then the sections
that need no server (export of a 200,000-message subject, Maildir erasure,
the engine in-process). ``--compare`` runs only the shop, each dsar request
followed by one of the leader's (``bench/compare.py``), and prints the ratios.

Every option also reads an environment variable (README, Performance).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import signal
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench import profile as sampler
from bench import report, runs, shop
from bench.server import Pg, postgres

LABELS = {10_000: "10k", 100_000: "100k", 1_000_000: "1m"}
SECTIONS = ("shop", "demo", "queued", "submit", "celery", "console", "trail", "export",
            "maildir", "inprocess")


def label(customers: int) -> str:
    return LABELS.get(customers, f"{customers}")


def _env(name: str, default: str) -> str:
    return os.environ.get(f"DSAR_BENCH_{name}") or default


def arguments() -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--customers", type=int, default=int(_env("CUSTOMERS", "10000")),
                   help="shop size (DSAR_BENCH_CUSTOMERS, 10000)")
    p.add_argument("--large", type=int, default=int(_env("LARGE", "0")),
                   help="also measure at this size, e.g. 1000000, and report large/small "
                        "(DSAR_BENCH_LARGE, off)")
    p.add_argument("--requests", type=int, default=int(_env("REQUESTS", "30")),
                   help="timed requests per kind and app database (DSAR_BENCH_REQUESTS, 30)")
    p.add_argument("--queued", default=_env("QUEUED", "200,1000"),
                   help="queue sizes for throughput (DSAR_BENCH_QUEUED, 200,1000)")
    p.add_argument("--app-db", default=_env("APP_DB", "sqlite,postgresql"),
                   help="app databases (DSAR_BENCH_APP_DB, sqlite,postgresql)")
    p.add_argument("--skip", default=_env("SKIP", ""),
                   help=f"sections to skip, comma-separated: {', '.join(SECTIONS)}")
    p.add_argument("--gen-seconds", type=float, default=float(_env("GEN_SECONDS", "900")),
                   help="give up generating a shop after this long (DSAR_BENCH_GEN_SECONDS)")
    p.add_argument("--compare", action="store_true",
                   help="the leader, alternated with dsar on the shop (make bench-compare)")
    p.add_argument("--compare-requests", type=int, default=int(_env("COMPARE_REQUESTS", "15")),
                   help="requests per kind for each tool when comparing "
                        "(DSAR_BENCH_COMPARE_REQUESTS, 15)")
    p.add_argument("--profile", default=_env("PROFILE", ""),
                   help="sample dsar run with py-spy during the shop runs; raw stacks to "
                        "this folder, a summary in the report (DSAR_BENCH_PROFILE, off)")
    return p.parse_args()


@contextlib.contextmanager
def shops(pg: Pg, sizes: list[int], gen_seconds: float) -> Iterator[dict[int, str]]:
    """Each size's shop database, generated now, dropped at the end."""
    made: dict[int, str] = {}
    try:
        for size in sizes:
            db = f"dsar_bench_shop_{label(size)}"
            print(f"generating the shop: {size:,} customers ({db})", flush=True)
            shop.create(pg.dsn, db, size, max_seconds=gen_seconds)
            made[size] = db
        yield made
    finally:
        for db in made.values():
            shop._drop(pg.dsn, db)


def shop_latency(pg: Pg, root: Path, db: str, size: int, app_dbs: list[str],
                 requests: int, profile: str) -> dict[str, Any]:
    connectors = root / f"shop-{db}.toml"
    connectors.write_text(shop.connector_toml(pg.url(db)))
    subjects = runs.Subjects(size, shop.email, seed=size)
    out: dict[str, Any] = {}
    for app_db in app_dbs:
        name = f"shop-{label(size)}-{app_db}"
        with runs.app_database(pg, app_db, root, f"shop_{label(size)}") as url, \
             runs.serving(root / name, url, connectors) as (server, client):
            runs.warm_up(client, subjects)
            with sampler.sampling(server, profile and Path(profile) / f"{name}.txt") as top:
                out[app_db] = runs.latency(client, subjects, requests)
            if top:
                out[app_db]["profile"] = top
        print(f"  shop {label(size)} {app_db}: {_brief(out[app_db])}", flush=True)
    return out


def _nth(emails: list[str], i: int) -> str:
    return emails[i - 1]


def demo_latency(pg: Pg, root: Path, app_dbs: list[str], requests: int) -> dict[str, Any]:
    from dsar.demo import seed

    out: dict[str, Any] = {}
    for app_db in app_dbs:
        info = seed(root / f"demo-{app_db}" / "stores", customers=2 * requests + 8)
        subjects = runs.Subjects(len(info.emails), functools.partial(_nth, info.emails), seed=3)
        with runs.app_database(pg, app_db, root, "demo") as url, \
             runs.serving(root / f"demo-{app_db}", url, info.connector_file) as (_s, client):
            runs.warm_up(client, subjects)
            out[app_db] = runs.latency(client, subjects, requests)
        print(f"  demo {app_db}: {_brief(out[app_db])}", flush=True)
    return out


def queued(pg: Pg, root: Path, db: str, size: int, app_dbs: list[str],
           counts: list[int]) -> dict[str, Any]:
    connectors = root / f"queued-{db}.toml"
    connectors.write_text(shop.connector_toml(pg.url(db)))
    out: dict[str, Any] = {}
    for app_db in app_dbs:
        subjects = runs.Subjects(size, shop.email, seed=size + 1)
        out[app_db] = {}
        for count in counts:
            with runs.app_database(pg, app_db, root, f"backlog_{count}") as url:
                backlog = runs.backlog(root / f"backlog-{app_db}", url, connectors, subjects,
                                       count)
            with runs.app_database(pg, app_db, root, f"queued_{count}") as url:
                through = runs.queued(root / f"queued-{app_db}", url, connectors, subjects,
                                      count)
            out[app_db][str(count)] = {"backlog": backlog, "through_api": through}
            print(f"  queued {count} {app_db}: backlog {backlog['requests_per_s']} /s, "
                  f"through the API {through['requests_per_s']} /s", flush=True)
    return out


def _brief(kinds: dict[str, Any]) -> str:
    return ", ".join(f"{k} {kinds[k]['median_ms']} ms (p95 {kinds[k]['p95_ms']})"
                     for k in ("access", "erasure"))


def compare(pg: Pg, root: Path, dbs: dict[int, str], app_dbs: list[str],
            requests: int) -> dict[str, Any]:
    from bench import compare as leader_kit

    leader_kit.kit()  # exits non-zero with a message when the kit is missing
    out: dict[str, Any] = {}
    with leader_kit.leader(pg) as (module, api, pid):
        for size, db in dbs.items():
            connectors = root / f"compare-{db}.toml"
            connectors.write_text(shop.connector_toml(pg.url(db)))
            subjects = runs.Subjects(size, shop.email, seed=size + 2)
            out[label(size)] = {}
            for app_db in app_dbs:
                try:
                    out[label(size)][app_db] = _compare_one(
                        pg, root, module, api, pid, (size, db), app_db, connectors, subjects,
                        requests)
                except SystemExit as exc:  # keep the other sizes' results
                    out[label(size)][app_db] = {"error": str(exc)}
                    print(f"  {label(size)} {app_db}: {exc}", flush=True)
    return out


def _compare_one(pg: Pg, root: Path, module: Any, api: Any, pid: int, shop_db: tuple[int, str],
                 app_db: str, connectors: Path, subjects: runs.Subjects,
                 requests: int) -> dict[str, Any]:
    from bench import compare as leader_kit

    size, db = shop_db
    turns = leader_kit.Turns(module, api, pid, db, subjects)
    turns.warm_up()
    with runs.app_database(pg, app_db, root, f"cmp_{label(size)}") as url, \
         runs.serving(root / f"cmp-{label(size)}-{app_db}", url, connectors) as (_s, client):
        runs.warm_up(client, subjects)
        ours = runs.latency(client, subjects, requests, between=turns)
    theirs = turns.summary()
    ratio = {k: round(theirs[k]["median_ms"] / ours[k]["median_ms"], 1)
             for k in ("access", "erasure")}
    print(f"  {label(size)} {app_db}: dsar {_brief(ours)}; leader {_brief(theirs)}; "
          f"ratio {ratio}", flush=True)
    return {"dsar": ours, "leader": theirs, "ratio": ratio}


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    # Run from a background shell, SIGINT arrives ignored, and children would
    # inherit that: take it back, and let SIGTERM clean up the same way.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    args = arguments()
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    app_dbs = [d.strip() for d in args.app_db.split(",") if d.strip()]
    sizes = [args.customers] + ([args.large] if args.large else [])
    if args.compare:
        from bench import compare as leader_kit

        leader_kit.kit()  # no kit: say so and exit non-zero before any work
    sections: dict[str, Any] = {}
    with postgres() as pg, tempfile.TemporaryDirectory(prefix="dsar-bench-") as tmp, \
         shops(pg, sizes, args.gen_seconds) as dbs:
        root = Path(tmp)
        if args.compare:
            sections["compare"] = compare(pg, root, dbs, app_dbs, args.compare_requests)
        else:
            sections.update(_engine(pg, root, dbs, app_dbs, args, skip))
    _offline(sections, skip if not args.compare else set(SECTIONS))
    print(report.table(sections))
    print(f"written to {report.save(sections)}")


def _engine(pg: Pg, root: Path, dbs: dict[int, str], app_dbs: list[str],
            args: argparse.Namespace, skip: set[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "shop" not in skip:
        out["workload"] = {"customers": list(dbs), "requests_per_kind": args.requests,
                           "postgresql": f"{pg.host}:{pg.port}"}
        out["shop"] = {label(size): shop_latency(pg, root, db, size, app_dbs, args.requests,
                                                 args.profile) for size, db in dbs.items()}
        if args.large:
            out["scale"] = {"sizes": [label(s) for s in dbs], "ratios": report.scale_ratios(
                out["shop"], label(args.customers), label(args.large))}
    if "demo" not in skip:
        out["demo"] = demo_latency(pg, root, app_dbs, args.requests)
    if "queued" not in skip:
        counts = [int(c) for c in args.queued.split(",") if c.strip()]
        out["queued"] = queued(pg, root, dbs[args.customers], args.customers, app_dbs, counts)
    if "submit" not in skip:
        out["submit_load"] = _optional("submit", lambda: _submit_load(pg))
    if "celery" not in skip:
        out["celery"] = _optional("celery", _celery)
    if "console" not in skip:
        from bench import console

        print("console_queue (100,000 requests) ...", flush=True)
        out["console_queue"] = console.run(pg)
        print(f"  console: {console.brief(out['console_queue'])}", flush=True)
    if "trail" not in skip:
        from bench import audit_trail

        print("audit_trail (1,000,000 events) ...", flush=True)
        out["audit_trail"] = audit_trail.run(pg)
        print(f"  trail: {audit_trail.brief(out['audit_trail'])}", flush=True)
    return out


def _submit_load(pg: Pg) -> dict[str, Any]:
    from bench import submit_load

    return submit_load.run(submissions=1000, warmup=200, clients=8, pg=pg)


def _celery() -> dict[str, Any]:
    from bench import celery_throughput

    return celery_throughput.run(requests=200)


def _optional(name: str, measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """A section that needs a server the machine may lack (Redis): its failure
    is reported in the results, not fatal to the whole run."""
    try:
        return measure()
    except Exception as exc:
        print(f"bench: section {name} not measured: {type(exc).__name__}: {exc}")
        return {"not_measured": f"{type(exc).__name__}: {exc}"}


def _offline(sections: dict[str, Any], skip: set[str]) -> None:
    """The sections that need no server."""
    if "export" not in skip:
        try:
            from bench import export_large
        except ImportError:  # a checkout without it
            export_large = None  # type: ignore[assignment]
        if export_large is not None:
            print("export_large ...", flush=True)
            sections["export_large"] = export_large.run()
    if "maildir" not in skip:
        from bench import maildir_erase

        print("maildir_erase ...", flush=True)
        sections["maildir_erase"] = maildir_erase.run()
    if "inprocess" not in skip:
        from bench import inprocess

        print("demo_inprocess ...", flush=True)
        sections["demo_inprocess"] = inprocess.run()


if __name__ == "__main__":
    main()
