"""The summary of a `make mutate` run: ``python -m bench.mutate --out FILE.json``.

Reads mutmut's results in ``mutants/`` (one ``<file>.meta`` per mutated module: each
mutant's exit code) and writes, per module and in total, how many mutants were killed,
survived, timed out, were suspicious or reached by no test, and the score: killed and
timed-out mutants over all of them. Every survivor (and every mutant no test reached) is
listed with its change and the reason it is left, read from ``bench/mutate-survivors.toml``:

    ["dsar.crypto.x_derive_key__mutmut_3"]
    kind = "equivalent"     # or "left": a real gap not worth a test (yet), say why
    why = "the length is never read"

A survivor whose every changed line lies in a ``log.<level>(...)`` call is equivalent by
rule (LOG_REASON) unless the file says otherwise. A survivor without a reason is flagged
(``"unexplained": true`` and in the totals), and so is a reason for a mutant that no longer
survives (``stale_reasons``): mutmut numbers a function's mutants afresh when the function
changes, so a reason may have to move.
``score_without_equivalent`` leaves the mutants reviewed as equivalent out of the count.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import json
import os
import platform
import sys
import textwrap
import tomllib
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MUTANTS = ROOT / "mutants"
REASONS = ROOT / "bench" / "mutate-survivors.toml"

# mutmut's exit codes (mutmut.stats.status_by_exit_code), folded into the summary's names.
STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no_tests", 33: "no_tests",
          34: "skipped", 35: "suspicious", 36: "timeout", -24: "timeout", 24: "timeout",
          152: "timeout", 255: "timeout", 37: "caught_by_type_check", None: "not_checked",
          2: "interrupted", -11: "segfault", -9: "segfault"}
COUNTED = ("killed", "timeout", "survived", "suspicious", "no_tests", "not_checked",
           "skipped", "segfault", "interrupted", "caught_by_type_check")
LISTED = ("survived", "no_tests", "suspicious")  # each needs a reason
LOG_LEVELS = frozenset({"debug", "info", "warning", "error", "exception", "critical"})
#: the one reason given by rule rather than per mutant
LOG_REASON = ("equivalent", "only a log call's text or arguments change: what operators "
              "read, not what the module decides (tests/portal/test_logs.py checks that no "
              "log line carries personal data)")


def status(exit_code: int | None) -> str:
    return STATUS.get(exit_code, "suspicious")


def score(counts: Counter[str], equivalent: int = 0) -> float | None:
    """Mutants killed by a test, timed out or rejected by mypy (strict, as `make types`:
    such a mutant could not land) over all generated ones, less skipped, not (yet)
    checked and ``equivalent`` ones; in percent."""
    total = sum(counts.values()) - counts["skipped"] - counts["not_checked"] - equivalent
    caught = counts["killed"] + counts["timeout"] + counts["caught_by_type_check"]
    return round(100 * caught / total, 1) if total else None


def tests_score(counts: Counter[str]) -> float | None:
    """The tests' share alone: killed or timed out over the mutants mypy let through."""
    total = (sum(counts.values()) - counts["skipped"] - counts["not_checked"]
             - counts["caught_by_type_check"])
    return round(100 * (counts["killed"] + counts["timeout"]) / total, 1) if total else None


def load_results(mutants: Path) -> dict[str, dict[str, int | None]]:
    """``{source path: {mutant name: exit code}}`` from mutmut's meta files."""
    results = {}
    for meta in sorted(mutants.rglob("*.py.meta")):
        source = meta.relative_to(mutants).as_posix().removesuffix(".meta")
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        if codes:
            results[source] = codes
    return results


def load_reasons(path: Path) -> dict[str, dict[str, str]]:
    if not path.exists():
        return {}
    reasons: dict[str, dict[str, str]] = tomllib.loads(path.read_text())
    for name, entry in reasons.items():
        if entry.get("kind") not in ("equivalent", "left") or not entry.get("why"):
            sys.exit(f"{path}: {name} needs kind = \"equivalent\" or \"left\" and a why")
    return reasons


def functions_of(mutant: str, path: str) -> tuple[str, str] | None:
    """The mutated function's source before and after the mutation (mutmut's own reading)."""
    try:
        import libcst as cst
        from mutmut.mutation.diff_apply import (
            read_functions_from_index,
            read_mutant_function,
            read_mutants_module,
            read_original_function,
        )
    except ImportError:
        return None
    cwd = os.getcwd()
    os.chdir(ROOT)  # mutmut reads setup.cfg and mutants/ from the working directory
    try:
        functions = read_functions_from_index(mutant, path)
        if functions is None:
            module = read_mutants_module(path)
            functions = (read_original_function(module, mutant),
                         read_mutant_function(module, mutant))
        before, after = (cst.Module([f]).code.strip() for f in functions)
    except Exception:  # a missing diff must not lose the summary
        return None
    finally:
        os.chdir(cwd)
    return before, after


def change_of(before: str, after: str) -> tuple[str, set[int]]:
    """The mutation as ``-``/``+`` lines, and the numbers of the lines it changed in
    ``before`` (1-based)."""
    lines, changed = [], set()
    old, new = before.splitlines(), after.splitlines()
    matcher = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    for tag, a0, a1, b0, b1 in matcher.get_opcodes():
        if tag == "equal":
            continue
        lines += [f"-{line}" for line in old[a0:a1]]
        lines += [f"+{line}" for line in new[b0:b1]]
        changed |= set(range(a0 + 1, a1 + 1)) or {a0 + 1}
    return "\n".join(lines), changed


def only_in_log_calls(before: str, changed: set[int]) -> bool:
    """Whether every changed line lies in a ``log.<level>(...)`` call (its text, its
    arguments): what a log line says is not what the module decides."""
    try:
        tree = ast.parse(textwrap.dedent(before))
    except SyntaxError:
        return False
    spans = [(node.lineno, node.end_lineno or node.lineno) for node in ast.walk(tree)
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
             and isinstance(node.func.value, ast.Name) and node.func.value.id == "log"
             and node.func.attr in LOG_LEVELS]
    return bool(changed) and all(any(a <= n <= b for a, b in spans) for n in changed)


def runs_of(mutants: Path) -> list[dict[str, Any]]:
    """What `make mutate` logged in mutants/runs.log: start, wall seconds, mutant filter."""
    log = mutants / "runs.log"
    if not log.exists():
        return []
    runs = []
    for line in log.read_text().splitlines():
        start, seconds, *names = line.split()
        patterns = [name for name in names if "*" in name or "-" in name]
        exact = len(names) - len(patterns)
        runs.append({"start": start, "wall_seconds": int(seconds),
                     "mutants": (patterns + ([f"{exact} survivors by name"] if exact else []))
                     if names else "all"})
    return runs


def summarise(mutants: Path = MUTANTS, reasons_path: Path = REASONS,
              diffs: bool = True) -> dict[str, Any]:
    results = load_results(mutants)
    if not results:
        sys.exit(f"no mutmut results in {mutants}: run `make mutate` first")
    reasons = load_reasons(reasons_path)
    modules, survivors, totals = {}, [], Counter[str]()
    equivalent_total = 0
    listed_names = set()
    for source, codes in results.items():
        counts = Counter(status(code) for code in codes.values())
        equivalent = 0
        for name, code in codes.items():
            if status(code) not in LISTED:
                continue
            listed_names.add(name)
            reason = reasons.get(name)
            entry: dict[str, Any] = {"mutant": name, "module": source, "status": status(code)}
            functions = functions_of(name, source) if diffs else None
            if functions is not None:
                entry["change"], changed = change_of(*functions)
                if reason is None and only_in_log_calls(functions[0], changed):
                    reason = {"kind": LOG_REASON[0], "why": LOG_REASON[1], "rule": "log call"}
            if reason is None:
                entry["unexplained"] = True
            else:
                entry.update(reason)
                equivalent += reason["kind"] == "equivalent"
            survivors.append(entry)
        modules[source] = {**{key: counts[key] for key in COUNTED if counts[key]},
                           "total": sum(counts.values()), "score": score(counts),
                           "score_without_equivalent": score(counts, equivalent),
                           "tests_score": tests_score(counts)}
        totals += counts
        equivalent_total += equivalent
    unexplained = [entry["mutant"] for entry in survivors if entry.get("unexplained")]
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "tool": f"mutmut {_version()}",
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, "
                   f"Python {platform.python_version()}",
        "command": "make mutate",
        "runs": runs_of(mutants),
        "score_definition": "(killed + timeout + caught_by_type_check) / (all mutants - "
                            "skipped - not_checked), in percent; score_without_equivalent "
                            "also leaves out the survivors reviewed as equivalent; "
                            "tests_score is (killed + "
                            "timeout) / (all mutants - skipped - not_checked - "
                            "caught_by_type_check)",
        "total": {**{key: totals[key] for key in COUNTED if totals[key]},
                  "total": sum(totals.values()), "score": score(totals),
                  "equivalent": equivalent_total,
                  "score_without_equivalent": score(totals, equivalent_total),
                  "tests_score": tests_score(totals), "unexplained": len(unexplained)},
        "modules": modules,
        "survivors": survivors,
        "unexplained": unexplained,
        "stale_reasons": sorted(set(reasons) - listed_names),
    }


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("mutmut")
    except Exception:  # only a label
        return "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write the JSON here (default: stdout)")
    parser.add_argument("--mutants", type=Path, default=MUTANTS)
    parser.add_argument("--reasons", type=Path, default=REASONS)
    parser.add_argument("--no-diffs", action="store_true", help="leave out each change")
    args = parser.parse_args(argv)
    summary = summarise(args.mutants, args.reasons, diffs=not args.no_diffs)
    text = json.dumps(summary, indent=2, ensure_ascii=False) + "\n"
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    total = summary["total"]
    print(f"mutants {total['total']}: killed {total.get('killed', 0)}, "
          f"by mypy {total.get('caught_by_type_check', 0)}, "
          f"timeout {total.get('timeout', 0)}, survived {total.get('survived', 0)}, "
          f"no tests {total.get('no_tests', 0)}, not checked {total.get('not_checked', 0)}; "
          f"score {total['score']}% ({total['score_without_equivalent']}% without "
          f"equivalent ones; tests alone {total['tests_score']}%); "
          f"{total['unexplained']} unexplained" + (f"; written to {args.out}" if args.out else ""),
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
