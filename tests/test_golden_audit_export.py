"""Golden files: ``dsar audit export`` in both formats, byte for byte.

The chain a small day leaves on the demo stores, all through the CLI with a
frozen clock (moved on a minute between steps), seeded ids and a fixed
operator name: a demo customer's access request, verified out of band and
processed to its bundle by one worker (so the events come in one order), and
another customer's erasure, denied by the officer. Every event is pinned with
its time, actor, details, hash and seal (the seal's key comes from the test
app's fixed SECRET_KEY). SQLite only: one golden file per format.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result
from flask import Flask
from syrupy.assertion import SnapshotAssertion

from dsar.demo import customers_of
from dsar.runtime import Runtime
from tests.support.golden import demo_stores, frozen, golden  # noqa: F401

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

ACCESS, ERASURE = customers_of(3)[1], customers_of(3)[2]


@pytest.fixture
def chain_app(make_app: Callable[..., Flask], tmp_path: Path, cli: Callable[..., Result],
              seeded: object, monkeypatch: pytest.MonkeyPatch) -> Flask:
    """An app whose audit chain holds the day described above."""
    monkeypatch.setenv("LOGNAME", "officer")  # the CLI's actor: operator:<login name>
    demo = demo_stores(tmp_path / "instance")
    app = make_app(CONNECTORS=str(demo.connector_file))
    rt: Runtime = app.extensions["dsar"]
    clock = frozen(rt)

    def run(*args: str) -> str:
        result = cli(*args, app_=app)
        assert result.exit_code == 0, result.output
        clock.advance(minutes=1)
        return result.output

    access = json.loads(run("requests", "submit", "--kind", "access", "--email", ACCESS.email,
                            "--verified", "--json"))["id"]
    run("requests", "process", "--workers", "1", "--timeout", "60")
    erasure = json.loads(run("requests", "submit", "--kind", "erasure", "--email",
                             ERASURE.email, "--verified", "--json"))["id"]
    run("requests", "deny", erasure, "--reason", "An open invoice: we must keep the records.")
    assert "completed" in run("requests", "show", access)
    assert run("audit", "verify").startswith("audit chain intact")
    return app


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_audit_export(chain_app: Flask, cli: Callable[..., Result], fmt: str, tmp_path: Path,
                      golden: SnapshotAssertion) -> None:  # noqa: F811
    out = tmp_path / f"audit.{fmt}"
    result = cli("audit", "export", "--format", fmt, "--output", str(out), app_=chain_app)
    assert result.exit_code == 0, result.output
    assert golden == out.read_bytes().decode("utf-8")


def test_audit_export_to_stdout_is_the_same(chain_app: Flask, cli: Callable[..., Result],
                                            tmp_path: Path) -> None:
    out = tmp_path / "audit.jsonl"
    cli("audit", "export", "--output", str(out), app_=chain_app)
    printed = cli("audit", "export", app_=chain_app)
    assert printed.exit_code == 0
    assert printed.stdout == out.read_text("utf-8")
