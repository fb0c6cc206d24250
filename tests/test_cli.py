"""The officer's stand-in until the console exists: the requests commands."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from click.testing import Result
from sqlalchemy import select

from dsar.models import AuditEvent
from dsar.runtime import Runtime

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def submit(cli: Callable[..., Result], *args: str) -> str:
    result = cli("requests", "submit", *args, "--json")
    assert result.exit_code == 0, result.output
    return str(json.loads(result.output)["id"])


def test_deny_with_reason(cli: Callable[..., Result], rt: Runtime) -> None:
    request_id = submit(cli, "--kind", "erasure", "--email", "a@example.org", "--verified")
    result = cli("requests", "deny", request_id, "--reason", "an open contract dispute")
    assert result.exit_code == 0 and result.output.strip() == f"{request_id} denied"
    view = json.loads(cli("requests", "show", request_id, "--json").output)
    assert view["status"] == "denied" and view["status_reason"] == "an open contract dispute"
    assert view["closed_at"] is not None
    with rt.transaction() as session:
        event = session.scalars(select(AuditEvent).order_by(AuditEvent.seq.desc())).first()
        assert event is not None and event.action == "request.denied"
        assert event.actor.startswith("operator:")
    again = cli("requests", "approve", request_id)
    assert again.exit_code == 1 and "denied cannot become approved" in again.output


def test_list_and_show(cli: Callable[..., Result]) -> None:
    first = submit(cli, "--kind", "access", "--email", "a@example.org")
    second = submit(cli, "--kind", "erasure", "--email", "b@example.org", "--verified")
    rows = json.loads(cli("requests", "list", "--json").output)
    assert [r["id"] for r in rows] == [first, second]  # oldest deadline first
    assert [r["status"] for r in rows] == ["received", "awaiting_review"]
    only = json.loads(cli("requests", "list", "--status", "received", "--json").output)
    assert [r["id"] for r in only] == [first]
    text = cli("requests", "show", second).output
    assert second in text and "awaiting_review" in text
    view = json.loads(cli("requests", "show", first, "--json").output)
    assert view["identifiers"] == [{"kind": "email", "source": "requester",
                                    "added_at": view["identifiers"][0]["added_at"]}]
    assert "a@example.org" not in json.dumps(view)


@pytest.mark.parametrize(("args", "message"), [
    (["requests", "show", "nope"], "no request nope"),
    (["requests", "approve", "nope"], "no request nope"),
    (["requests", "deny", "nope", "--reason", "x"], "no request nope"),
    (["requests", "submit", "--kind", "access", "--email", "not-an-email"],
     "Not a valid email address"),
    (["requests", "submit", "--kind", "delete", "--email", "a@example.org"], "delete"),
    (["requests", "submit", "--kind", "access", "--email", "a@example.org", "--name", "n" * 201],
     "name"),
])
def test_bad_input_is_a_clear_error(cli: Callable[..., Result], args: list[str],
                                    message: str) -> None:
    result = cli(*args)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output


def test_blank_denial_reason_is_refused(cli: Callable[..., Result]) -> None:
    request_id = submit(cli, "--kind", "erasure", "--email", "a@example.org", "--verified")
    result = cli("requests", "deny", request_id, "--reason", "  ")
    assert result.exit_code == 1 and "needs a reason" in result.output
    assert json.loads(cli("requests", "show", request_id, "--json").output)["status"] == \
        "awaiting_review"


@pytest.fixture(params=["sqlite", "postgresql"])
def never_upgraded(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    """An app database nobody ran ``dsar db upgrade`` on: a new file, a new database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'never-upgraded.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.mark.parametrize("args", [["requests", "list"], ["officers", "list"],
                                  ["requests", "submit", "--kind", "access",
                                   "--email", "a@example.org"]])
def test_a_database_never_upgraded_says_what_to_run(
        cli: Callable[..., Result], never_upgraded: str, tmp_path: Any, args: list[str]) -> None:
    """Not a SQLAlchemy traceback: the command to run."""
    from dsar import create_app
    from tests.support.app import SECRET

    empty = create_app({"DATABASE_URL": never_upgraded, "SECRET_KEY": SECRET,
                        "EXPORT_DIR": str(tmp_path / "exports")})
    try:
        result = cli(*args, app_=empty)
    finally:
        empty.extensions["dsar"].close()
    assert result.exit_code == 1
    assert "Traceback" not in result.output and "SELECT" not in result.output
    assert "dsar db upgrade" in result.output


def test_show_says_where_the_export_is(cli: Callable[..., Result], rt: Runtime) -> None:
    from tests.test_engine import process

    rt.settings["CONNECTORS"] = None
    made = cli("requests", "submit", "--kind", "access", "--email", "a@example.org",
               "--verified", "--json")
    request_id = json.loads(made.output)["id"]
    process(rt)
    shown = cli("requests", "show", request_id).output
    path = f"{rt.settings['EXPORT_DIR']}/{request_id}.zip"
    assert f"export: {path}" in shown
    assert "downloads 0 of 3" in shown and "link valid until " in shown
    view = json.loads(cli("requests", "show", request_id, "--json").output)
    assert view["export"]["path"] == path and view["export"]["downloads"] == 0
