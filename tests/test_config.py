"""Settings and the connector file: clear errors that name what is wrong."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dsar import create_app
from dsar.config import ConfigError, load_settings
from dsar.registry import load_connectors
from tests.support.app import SECRET, write_connectors
from tests.support.engine_connectors import TYPES


def test_development_defaults_work_out_of_the_box(tmp_path: Path) -> None:
    settings = load_settings({}, None, str(tmp_path))
    assert settings["ENV"] == "development"
    assert settings["DATABASE_URL"] == f"sqlite:///{tmp_path / 'dsar.db'}"
    assert settings["ERASURE_REVIEW"] is True
    secret_file = tmp_path / "secret_key"
    assert secret_file.stat().st_mode & 0o777 == 0o600
    assert load_settings({}, None, str(tmp_path))["SECRET_KEY"] == settings["SECRET_KEY"]


def test_production_refuses_development_secret(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="DSAR_SECRET_KEY"):
        load_settings({"DSAR_ENV": "production", "DSAR_SMTP_URL": "smtp://mail:25"}, None,
                      str(tmp_path))


def test_production_refuses_missing_smtp(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="DSAR_SMTP_URL"):
        load_settings({"DSAR_ENV": "production", "DSAR_SECRET_KEY": SECRET}, None, str(tmp_path))


def test_production_starts_with_both(tmp_path: Path) -> None:
    settings = load_settings({"DSAR_ENV": "production", "DSAR_SECRET_KEY": SECRET,
                              "DSAR_SMTP_URL": "smtp://mail:25"}, None, str(tmp_path))
    assert settings["ENV"] == "production"
    assert not (tmp_path / "secret_key").exists()


@pytest.mark.parametrize(("name", "value", "message"), [
    ("DSAR_ENV", "staging", "expected development or production"),
    ("DSAR_WORKERS", "0", "positive whole number"),
    ("DSAR_WORKERS", "many", "invalid literal"),
    ("DSAR_ERASURE_REVIEW", "perhaps", "true or false"),
    ("DSAR_TASK_LEASE_SECONDS", "-1", "positive number"),
    ("DSAR_SECRET_KEY", "short", "at least 32"),
])
def test_bad_values_name_the_variable(tmp_path: Path, name: str, value: str,
                                      message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({name: value}, None, str(tmp_path))
    assert name in str(caught.value) and message in str(caught.value)


def _error(tmp_path: Path, text: str) -> str:
    path = tmp_path / "connectors.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_connectors(str(path), TYPES)
    assert str(path) in str(caught.value)
    return str(caught.value)


def test_connector_file_errors_name_file_and_key(tmp_path: Path) -> None:
    assert "not valid TOML" in _error(tmp_path, "[connectors.crm\n")
    assert "no [connectors" in _error(tmp_path, "title = 'x'\n")
    assert "connectors.crm.type: missing" in _error(tmp_path, "[connectors.crm]\nscript='a'\n")
    unknown = _error(tmp_path, '[connectors.crm]\ntype = "oracle"\n')
    assert "connectors.crm.type: unknown connector type 'oracle'" in unknown
    assert "maildir" in unknown and "sql" in unknown  # lists what is installed
    bad_key = _error(tmp_path, '[connectors.crm]\ntype = "scripted"\nscript = "a"\nextra = 1\n')
    assert "connectors.crm: extra: Unknown field." in bad_key
    missing = _error(tmp_path, '[connectors.mail]\ntype = "maildir"\n')
    assert "connectors.mail: path: Missing data" in missing


def test_a_label_is_the_store_s_name_for_requesters(tmp_path: Path) -> None:
    """``label`` is taken out before the connector's own schema sees the rest
    (the scripted schema knows no such key); no label: ``None``."""
    path = write_connectors(tmp_path / "c.toml", {
        "crm": {"type": "scripted", "script": "a", "label": "  Customer accounts "},
        "chat": {"type": "scripted", "script": "b"}})
    loaded = load_connectors(str(path), TYPES)
    assert (loaded["crm"].name, loaded["crm"].label) == ("crm", "Customer accounts")
    assert "label" not in loaded["crm"].config
    assert (loaded["chat"].name, loaded["chat"].label) == ("chat", None)


@pytest.mark.parametrize("label", ["42", "''", "'   '", "['a']", "{ text = 'a' }", "true"])
def test_a_label_that_is_not_text_names_file_and_key(tmp_path: Path, label: str) -> None:
    error = _error(tmp_path, f'[connectors.crm]\ntype = "scripted"\nscript = "a"\n'
                             f"label = {label}\n")
    assert "connectors.crm.label: " in error and "text" in error


def test_missing_connector_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="connector file not found"):
        load_connectors(str(tmp_path / "nope.toml"))


def test_capability_without_its_method_is_refused(tmp_path: Path) -> None:
    from dsar.connector import Capability, Connector
    from tests.support.engine_connectors import ScriptedSchema

    class Lazy(Connector):
        config_schema = ScriptedSchema
        capabilities = frozenset({Capability.FIND, Capability.ERASE})

        def check(self):  # type: ignore[no-untyped-def]
            raise NotImplementedError

        def find(self, subject):  # type: ignore[no-untyped-def]
            return iter(())

    path = write_connectors(tmp_path / "c.toml", {"x": {"type": "lazy", "script": "a"}})
    with pytest.raises(ConfigError, match="does not implement plan_erasure"):
        load_connectors(str(path), {"lazy": Lazy})


def test_production_app_validates_connectors_at_start(tmp_path: Path) -> None:
    path = write_connectors(tmp_path / "c.toml", {"crm": {"type": "oracle"}})
    config = {"ENV": "production", "SECRET_KEY": SECRET, "SMTP_URL": "smtp://mail:25",
              "CONNECTORS": str(path), "DATABASE_URL": f"sqlite:///{tmp_path}/d.db"}
    with pytest.raises(ConfigError, match="unknown connector type"):
        create_app(config)


def _dsar(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    command = Path(sys.executable).with_name("dsar")
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DSAR_")}
    environ.update({"DSAR_INSTANCE_PATH": str(tmp_path / "instance"), **env})
    return subprocess.run([str(command), *args], capture_output=True, text=True, env=environ,
                          timeout=60, check=False)


@pytest.mark.smoke
def test_cli_works_before_and_despite_a_bad_connector_file(tmp_path: Path) -> None:
    assert _dsar(tmp_path, "--help").returncode == 0
    assert _dsar(tmp_path, "db", "upgrade").returncode == 0
    bad = tmp_path / "bad.toml"
    bad.write_text('[connectors.crm]\ntype = "oracle"\n')
    assert _dsar(tmp_path, "--help", DSAR_CONNECTORS=str(bad)).returncode == 0
    assert _dsar(tmp_path, "db", "upgrade", DSAR_CONNECTORS=str(bad)).returncode == 0
    result = _dsar(tmp_path, "connectors", "list", DSAR_CONNECTORS=str(bad))
    assert result.returncode == 1
    assert "unknown connector type 'oracle'" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_reports_bad_settings_without_a_traceback(tmp_path: Path) -> None:
    result = _dsar(tmp_path, "db", "upgrade", DSAR_WORKERS="zero")
    assert result.returncode != 0
    assert "DSAR_WORKERS" in result.stderr and "Traceback" not in result.stderr


def test_connector_secrets_from_the_environment(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[connectors.mail]\ntype = "maildir"\npath_env = "DSAR_TEST_MAILDIR"\n')
    with pytest.raises(ConfigError) as caught:
        load_connectors(str(path))
    assert "connectors.mail.path_env: environment variable DSAR_TEST_MAILDIR is not set" \
        in str(caught.value)
    monkeypatch.setenv("DSAR_TEST_MAILDIR", str(tmp_path / "mail"))
    assert load_connectors(str(path))["mail"].config["path"] == str(tmp_path / "mail")
    path.write_text('[connectors.mail]\ntype = "maildir"\npath = "/x"\npath_env = "X"\n')
    with pytest.raises(ConfigError, match="give path or path_env, not both"):
        load_connectors(str(path))


def test_nested_secret_from_the_environment(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DSAR_TEST_CRM_URL", f"sqlite:///{tmp_path}/crm.db")
    path = tmp_path / "c.toml"
    path.write_text('[connectors.crm]\ntype = "sql"\nurl_env = "DSAR_TEST_CRM_URL"\n'
                    '[[connectors.crm.tables]]\nname = "customers"\n'
                    'identity = { email = "email" }\nerase = "delete"\n')
    crm = load_connectors(str(path))["crm"]
    assert crm.config["url"] == f"sqlite:///{tmp_path}/crm.db"
    crm.close()
