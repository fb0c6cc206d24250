"""The benchmark's results: targets, the printed table, the JSON file.

Each run updates ``bench/results/engine-<date>.json``: the sections it ran
replace theirs, the others (an earlier ``make bench`` or ``make
bench-compare`` of the same day) are kept.
"""

from __future__ import annotations

import json
import os
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
# issue 9: ten times the leader, flat from 10k to 1M, 40 queued requests a second
TARGET_RATIO, TARGET_SCALE, TARGET_QUEUED = 10.0, 1.3, 40.0


def machine() -> str:
    return f"{platform.machine()} {os.cpu_count()} cpus, Python {platform.python_version()}"


def save(sections: dict[str, Any]) -> Path:
    """Merge ``sections`` into today's file; its path."""
    RESULTS.mkdir(exist_ok=True)
    now = datetime.now(UTC)
    out = RESULTS / f"engine-{now.date().isoformat()}.json"
    report: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
    if "shop" not in report and "access" in report:  # the old layout: keep its figures
        old = {k: report.pop(k) for k in ("database", "stores", "customers", "workers",
                                          "access", "erasure", "peak_rss_mb") if k in report}
        report.setdefault("demo_inprocess", old)
    report.update(sections, date=now.isoformat(timespec="seconds"), machine=machine())
    out.write_text(json.dumps(report, indent=2) + "\n")
    return out


def save_section(name: str, section: dict[str, Any]) -> Path:
    """One section run alone into today's file, the others' figures and date left
    as they are (:func:`save` dates the whole file: right for ``make bench``)."""
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"engine-{datetime.now(UTC).date().isoformat()}.json"
    results: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
    results[name] = section
    out.write_text(json.dumps(results, indent=2) + "\n")
    return out


def scale_ratios(shop: dict[str, Any], small: str, large: str) -> dict[str, Any]:
    """Median at the large size over the small one, per app database and kind."""
    out: dict[str, Any] = {}
    for app_db, kinds in shop.get(large, {}).items():
        base = shop.get(small, {}).get(app_db)
        if base:
            out[app_db] = {k: round(kinds[k]["median_ms"] / base[k]["median_ms"], 2)
                           for k in ("access", "erasure")}
    return out


def _verdict(ok: bool) -> str:
    return "meets" if ok else "MISSES"


def table(sections: dict[str, Any]) -> str:
    """The printed summary: latencies, ratios, throughput, each against its target."""
    lines = [f"{'workload':<26}{'app db':<12}{'kind':<9}{'median ms':>10}{'p95 ms':>9}"]
    for size, by_db in sections.get("shop", {}).items():
        for app_db, kinds in by_db.items():
            for kind in ("access", "erasure"):
                k = kinds[kind]
                lines.append(f"{'shop ' + size + ' (sql only)':<26}{app_db:<12}{kind:<9}"
                             f"{k['median_ms']:>10}{k['p95_ms']:>9}")
    for app_db, kinds in sections.get("demo", {}).items():
        for kind in ("access", "erasure"):
            k = kinds[kind]
            lines.append(f"{'demo (sql+maildir+slack)':<26}{app_db:<12}{kind:<9}"
                         f"{k['median_ms']:>10}{k['p95_ms']:>9}")
    for app_db, ratios in sections.get("scale", {}).get("ratios", {}).items():
        for kind, ratio in ratios.items():
            lines.append(f"1M/10k {app_db} {kind}: {ratio} (target <= {TARGET_SCALE}: "
                         f"{_verdict(ratio <= TARGET_SCALE)})")
    for app_db, sizes in sections.get("queued", {}).items():
        for count, q in sizes.items():
            b, t = q["backlog"], q["through_api"]
            target = ""
            if count == "200":
                target = (f" (target >= {TARGET_QUEUED:.0f}: "
                          f"{_verdict((b['requests_per_s'] or 0) >= TARGET_QUEUED)})")
            lines.append(f"queued {count} access, {app_db}: backlog {b['requests_per_s']} /s"
                         f"{target}; through the API with intake {t['requests_per_s']} /s "
                         f"(intake {t['intake_per_s']} /s)")
    for size, by_db in sections.get("compare", {}).items():
        for app_db, c in by_db.items():
            if "error" in c:
                lines.append(f"vs leader {size} {app_db}: failed: {c['error']}")
                continue
            for kind in ("access", "erasure"):
                d, f, r = c["dsar"][kind], c["leader"][kind], c["ratio"][kind]
                lines.append(f"vs leader {size} {app_db} {kind}: dsar {d['median_ms']} ms "
                             f"(p95 {d['p95_ms']}), leader {f['median_ms']} ms (p95 "
                             f"{f['p95_ms']}): x{r} (target >= {TARGET_RATIO:.0f}: "
                             f"{_verdict(r >= TARGET_RATIO)})")
    for name, label, size in (("console_queue", "console", "requests"),
                              ("audit_trail", "audit trail", "events")):
        pages = sections.get(name) or {}
        for page, t in pages.items():
            if isinstance(t, dict):
                lines.append(f"{label} {page} ({pages[size]:,} {size}, postgresql): "
                             f"{t['median_ms']} ms (p95 {t['p95_ms']}) (target < "
                             f"{pages['target_median_ms']:.0f}: "
                             f"{_verdict(t['median_ms'] < pages['target_median_ms'])})")
    trail = sections.get("audit_trail")
    if trail:
        lines.append(f"audit checks ({trail['events']:,} events): full "
                     f"{trail['full_check_seconds']} s, incremental "
                     f"{trail['incremental_check_seconds']} s over "
                     f"{trail['incremental_check_events']:,} new events")
    for name in ("submit_load", "celery", "export_large"):
        if sections.get(name):
            lines.append(f"{name}: " + json.dumps(sections[name])[:300])
    return "\n".join(lines)
