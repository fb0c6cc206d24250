"""The contract keeps its promises: secrets are never shown, the kit holds
schemas to flagging them, and connectors import nothing of dsar but the
contract (connectors/ruff.toml)."""

from __future__ import annotations

import ast
import logging
import pkgutil
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from click.testing import CliRunner, Result
from flask.cli import ScriptInfo
from marshmallow import Schema, ValidationError, fields, post_load

import dsar
from dsar import create_app
from dsar.cli import main
from dsar.config import ConfigError
from dsar.connector import (
    MASK,
    Action,
    Capability,
    CheckResult,
    Connector,
    ErasurePlan,
    PlanItem,
    Record,
    Subject,
    masked_config,
    redact_secrets,
    secret_values,
)
from dsar.registry import load_connectors
from dsar.testing import ConnectorContract, credential_like
from tests.support.app import SECRET, write_connectors

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "hunter2-Vault-Pw"
TOKEN = "tok-Vault-0123456789"
URL = f"postgresql://vault:{PASSWORD}@db.example/vault"


def _weak(value: str) -> None:
    if len(value) < 12:  # a careless validator: it echoes the value
        raise ValidationError(f"{value!r} is too short")


class VaultSchema(Schema):
    url = fields.String(required=True, metadata={"secret": True})
    token = fields.String(required=True, validate=_weak, metadata={"secret": True})
    note = fields.String(load_default="vault")
    #: a column's name, not a credential
    key = fields.String(load_default="id", metadata={"secret": False})


class Vault(Connector):
    """A careless connector: its check() quotes its credentials."""

    config_schema = VaultSchema

    def check(self) -> CheckResult:
        return CheckResult(False, f"{self.config['url']} refused token {self.config['token']}")

    def find(self, subject: Subject) -> Iterator[Record]:
        yield from ()


class Exploding(Vault):
    def __init__(self, name: str, config: Any) -> None:
        raise ValueError(f"cannot use {config['token']}")


TYPES: dict[str, type[Connector]] = {"vault": Vault, "exploding": Exploding}


@pytest.fixture
def dsar_cli(tmp_path: Path) -> Iterator[Callable[..., Result]]:
    """``dsar ...`` on an app whose connector file holds one ``vault``."""
    made: list[Any] = []

    def invoke(options: dict[str, Any], *args: str) -> Result:
        path = write_connectors(tmp_path / "connectors.toml", {"vault": options})
        app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'app.db'}",
                          "SECRET_KEY": SECRET, "CONNECTORS": str(path),
                          "EXPORT_DIR": str(tmp_path / "exports")}, connector_types=TYPES)
        made.append(app)
        return CliRunner().invoke(main, list(args), obj=ScriptInfo(create_app=lambda: app),
                                  catch_exceptions=False)

    yield invoke
    for app in made:
        app.extensions["dsar"].close()


def _leaks(text: str) -> list[str]:
    return [name for name, secret in (("password", PASSWORD), ("token", TOKEN),
                                      ("url", URL)) if secret in text]


# ------------------------------------------------------------------ never printed
def test_list_check_errors_and_logs_never_show_a_secret(
        dsar_cli: Callable[..., Result], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    good = {"type": "vault", "url": URL, "token": TOKEN, "note": "the vault",
            "label": "Our archive"}
    listed = dsar_cli(good, "connectors", "list", "--config")
    assert listed.exit_code == 0, listed.output
    assert '"note": "the vault"' in listed.output and f'"token": "{MASK}"' in listed.output
    assert f'"url": "{MASK}"' in listed.output
    assert "  requesters read: Our archive\n" in listed.output  # the label, not in config
    assert '"label"' not in listed.output
    assert not _leaks(listed.output)

    checked = dsar_cli(good, "connectors", "check")
    assert checked.exit_code == 1
    assert f"{MASK} refused token {MASK}" in checked.output
    assert not _leaks(checked.output)

    weak = "Weak-Pw1"
    refused = dsar_cli({**good, "token": weak}, "connectors", "list")
    assert refused.exit_code == 1
    assert "connectors.vault: token:" in refused.output and "is too short" in refused.output
    assert weak not in refused.output and not _leaks(refused.output)

    logged = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    assert weak not in logged and not _leaks(logged)


def test_secrets_from_the_environment_are_masked_too(
        dsar_cli: Callable[..., Result], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DSAR_TEST_VAULT_TOKEN", "s3cr3t-env")
    refused = dsar_cli({"type": "vault", "url": URL, "token_env": "DSAR_TEST_VAULT_TOKEN"},
                       "connectors", "list")
    assert refused.exit_code == 1 and "is too short" in refused.output
    assert "s3cr3t-env" not in refused.output and MASK in refused.output


def test_a_constructor_quoting_a_secret_is_a_masked_config_error(tmp_path: Path) -> None:
    path = write_connectors(tmp_path / "c.toml", {"vault": {
        "type": "exploding", "url": URL, "token": TOKEN}})
    with pytest.raises(ConfigError) as caught:
        load_connectors(str(path), TYPES)
    assert "connectors.vault: Exploding() raised ValueError: cannot use" in str(caught.value)
    assert not _leaks(str(caught.value))


def test_masked_config_walks_nested_lists_and_dicts() -> None:
    class Auth(Schema):
        kind = fields.String()
        password = fields.String(metadata={"secret": True})

    class Outer(Schema):
        auth = fields.Nested(Auth)
        mirrors = fields.List(fields.Nested(Auth))
        by_name = fields.Dict(keys=fields.String(), values=fields.Nested(Auth))
        tokens = fields.List(fields.String(), metadata={"secret": True})
        server = fields.String(data_key="Server")

    config = {"auth": {"kind": "basic", "password": "p1-secret"},
              "mirrors": [{"kind": "basic", "password": "p2-secret"}],
              "by_name": {"eu": {"kind": "basic", "password": "p3-secret"}},
              "tokens": ["t1-secret", "t2-secret"], "Server": "https://db.example",
              "undeclared": "u-secret"}
    assert masked_config(Outer, config) == {
        "auth": {"kind": "basic", "password": MASK},
        "mirrors": [{"kind": "basic", "password": MASK}],
        "by_name": {"eu": {"kind": "basic", "password": MASK}},
        "tokens": MASK, "Server": "https://db.example", "undeclared": MASK}
    assert secret_values(Outer, config) == {
        "p1-secret", "p2-secret", "p3-secret", "t1-secret", "t2-secret"}


def test_redact_secrets_masks_values_and_url_passwords() -> None:
    assert redact_secrets("x hunter2 y", {"hunter2"}) == f"x {MASK} y"
    assert redact_secrets("at redis://:p%40ss@cache:6379/0 and amqp://u:pw@mq//") == (
        f"at redis://:{MASK}@cache:6379/0 and amqp://u:{MASK}@mq//")
    assert redact_secrets("https://user@host/path and mailto:a@b.example") == (
        "https://user@host/path and mailto:a@b.example")
    assert secret_values(VaultSchema, {"note": "amqp://u:p%2Fw@mq//"}) == {"p%2Fw", "p/w"}


# ------------------------------------------------------------------ the kit
class _Holding(Vault):
    """Finds the records of ``plans`` and plans them as they are (with their holds)."""

    capabilities = frozenset({Capability.FIND, Capability.ERASE})
    plans: ClassVar[list[PlanItem]] = []

    def find(self, subject: Subject) -> Iterator[Record]:
        yield from (Record("c", item.key, "x", {}) for item in self.plans)

    def plan_erasure(self, subject: Subject) -> ErasurePlan:
        return ErasurePlan(self.name, list(self.plans))


@pytest.mark.parametrize(("items", "message"), [
    ([PlanItem("c", "1", Action.KEEP, "hold tax: 10 years", holds=("tax",)),
      PlanItem("c", "2", Action.DELETE)], None),
    ([PlanItem("c", "1", Action.KEEP, "kept by a hold it does not name")], None),
    ([PlanItem("c", "1", Action.DELETE, holds=("tax",))], "only a kept record names holds"),
    ([PlanItem("c", "1", Action.KEEP, "hold", holds=" tax ")],  # type: ignore[arg-type]
     "holds is a tuple of hold names"),
    ([PlanItem("c", "1", Action.KEEP, "hold", holds=("",))], "holds is a tuple of hold names"),
])
def test_the_kit_checks_the_holds_a_plan_names(items: list[PlanItem],
                                               message: str | None) -> None:
    """What the requester's notice explains hold by hold (dsar/workflow/notices.py)."""
    _Holding.plans = items
    connector = _Holding("holding", {"url": URL, "token": TOKEN})
    subject = Subject({"email": ["a@example.org"]})
    check = ConnectorContract().test_plan_lists_every_record_once_and_changes_nothing
    if message is None:
        check(connector, subject)
        return
    with pytest.raises(AssertionError, match=message):
        check(connector, subject)


@pytest.mark.parametrize(("name", "credential"), [
    ("password", True), ("api_key", True), ("apiKey", True), ("hash_key", True),
    ("key", True), ("access_token", True), ("client_secret", True), ("credentials", True),
    ("dsn", True), ("url", True), ("token_url", True), ("baseURL", True),
    ("password_file", True), ("path", False), ("username", False), ("client_id", False),
    ("keyboard", False), ("header", False), ("others", False), ("scope", False),
])
def test_credential_like_names(name: str, credential: bool) -> None:
    assert credential_like(name) is credential


def _kit_check(schema: type[Schema], raw: dict[str, Any]) -> None:
    """The kit's schema test on a connector configured by ``schema``."""
    probe = type("Probe", (Vault,), {"config_schema": schema})
    connector = probe("probe", probe.load_config(raw))
    ConnectorContract().test_credential_fields_are_flagged_secret(connector, raw)


def test_the_kit_passes_a_schema_that_flags_its_credentials() -> None:
    _kit_check(VaultSchema, {"url": URL, "token": TOKEN})


class _Auth(Schema):
    kind = fields.String()
    password = fields.String()


class _Unflagged(Schema):
    api_key = fields.String()
    auth = fields.Nested(_Auth)
    mirrors = fields.List(fields.Nested(_Auth))
    server_url = fields.String()
    label = fields.String()


class _UrlWithPassword(Schema):
    server = fields.String()


class _Copied(Schema):
    token = fields.String(metadata={"secret": True})
    header = fields.String()

    @post_load
    def _header(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        return {**data, "header": f"Bearer {data['token']}"}


@pytest.mark.parametrize(("schema", "raw", "message"), [
    (_Unflagged, {"label": "x"}, "not flagged secret: api_key, auth.password, "
                                 "mirrors[].password, server_url"),
    (_UrlWithPassword, {"server": URL}, "a URL with a password in a config field not "
                                        "flagged secret: server"),
    (_Copied, {"token": TOKEN}, "copied into a field not flagged secret"),
])
def test_the_kit_fails_a_schema_that_does_not(schema: type[Schema], raw: dict[str, Any],
                                              message: str) -> None:
    with pytest.raises(AssertionError) as caught:
        _kit_check(schema, raw)
    assert message in str(caught.value)
    assert not _leaks(str(caught.value))


def test_the_kit_fails_a_check_that_quotes_a_secret(
        caplog: pytest.LogCaptureFixture) -> None:
    vault = Vault("vault", {"url": URL, "token": TOKEN})
    with pytest.raises(AssertionError) as caught:
        ConnectorContract().test_check_and_logs_hold_no_secret(vault, vault, caplog)
    assert "check()'s message" in str(caught.value) and not _leaks(str(caught.value))


# ------------------------------------------------------------------ imports
def test_every_module_and_name_of_dsar_but_the_contract_is_banned() -> None:
    banned = tomllib.loads((ROOT / "connectors" / "ruff.toml").read_text())["lint"][
        "flake8-tidy-imports"]["banned-api"]
    modules = {f"dsar.{m.name}" for m in pkgutil.iter_modules(dsar.__path__)}
    tree = ast.parse((ROOT / "dsar" / "__init__.py").read_text())
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    public = {f"dsar.{n}" for n in names if not n.startswith("_") or n == "__version__"}
    assert "dsar.connector" in modules and "dsar.__version__" in public
    missing = sorted((modules | public) - {"dsar.connector"} - set(banned))
    assert not missing, f"add to connectors/ruff.toml: {missing}"
    assert "dsar.connector" not in banned


def _ruff(source: str, name: str) -> subprocess.CompletedProcess[str]:
    """``ruff check`` from the repository root on ``source`` as if it were the
    file ``name`` (stdin: nothing is written under connectors/)."""
    ruff = Path(sys.executable).with_name("ruff")
    return subprocess.run([str(ruff), "check", "--no-cache", "--output-format=concise",
                           "--stdin-filename", name, "-"], input=source, text=True,
                          capture_output=True, cwd=ROOT, timeout=60, check=False)


@pytest.mark.parametrize("source", [
    "from dsar.audit import record\n\nprint(record)\n",
    "import dsar.workflow.tasks\n\nprint(dsar.workflow.tasks)\n",
    "from dsar import __version__\n\nprint(__version__)\n",
    "import dsar.connector\n\nprint(dsar.config.load_settings)\n",
])
def test_ruff_refuses_a_connector_importing_more_of_dsar(source: str) -> None:
    refused = _ruff(source, "connectors/probe.py")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "TID251" in refused.stdout and "only dsar.connector" in refused.stdout
    elsewhere = _ruff(source, "dsar/probe.py")  # the rule is the connectors' only
    assert elsewhere.returncode == 0, elsewhere.stdout + elsewhere.stderr


def test_ruff_accepts_a_connector_importing_the_contract() -> None:
    source = "from dsar.connector import Subject\n\nprint(Subject)\n"
    accepted = _ruff(source, "connectors/sub/probe.py")
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
