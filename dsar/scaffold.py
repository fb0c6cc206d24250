"""``dsar connectors new NAME``: a working connector package to start from.

The skeleton is a real connector over a simple store (a JSON-lines file, one
object per line), so its tests pass on day one and show every part of the
contract: config schema, find, plan, erase, check, the entry point and the
conformance kit. Replace the store with yours.
"""

from __future__ import annotations

import keyword
import re
from pathlib import Path
from string import Template

NAME = re.compile(r"^[a-z][a-z0-9_]{1,40}$")

FILES: dict[str, str] = {
    "pyproject.toml": """\
[build-system]
requires = ["setuptools>=64", "wheel"]
build-backend = "setuptools.build_meta"
""",
    "setup.cfg": """\
[metadata]
name = dsar-connector-${dashed}
version = 0.1.0
description = A dsar connector for ${name}

[options]
packages = find:
python_requires = >=3.11
install_requires =
    dsar-toolkit>=0.1

[options.packages.find]
exclude = tests

[options.entry_points]
dsar.connectors =
    ${name} = ${package}:${cls}

[tool:pytest]
filterwarnings = error
""",
    "README.md": """\
# dsar-connector-${dashed}

A [dsar](https://pypi.org/project/dsar-toolkit/) connector. Install it next to
dsar (`pip install -e .`), then configure an instance in the connector file:

```toml
[connectors.my_${name}]
type = "${name}"
path = "/srv/${name}/people.jsonl"
```

Run its tests with `pytest`: they use dsar's conformance kit (`dsar.testing`).
""",
    "${package}/__init__.py": '''\
"""${cls}: finds and erases a person's entries in a JSON-lines file.

Each line is one object with an ``id`` and an ``email``. Replace the store
with yours: keep the contract (see dsar.connector).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from marshmallow import Schema, fields

from dsar.connector import (
    Action,
    Capability,
    CheckResult,
    Connector,
    ErasurePlan,
    ErasureResult,
    PermanentError,
    PlanItem,
    Record,
    RetryableError,
    Subject,
)


class ${cls}Config(Schema):
    path = fields.String(required=True)


class ${cls}(Connector):
    config_schema = ${cls}Config
    capabilities = frozenset({Capability.FIND, Capability.ERASE})
    identity_kinds = frozenset({"email"})

    @property
    def path(self) -> Path:
        return Path(self.config["path"])

    def _rows(self) -> Iterator[dict[str, Any]]:
        try:
            with self.path.open(encoding="utf-8") as handle:
                for line in handle:
                    if line.strip():
                        yield json.loads(line)
        except FileNotFoundError:
            raise PermanentError("the store file does not exist") from None
        except OSError as exc:
            raise RetryableError(f"the store file cannot be read ({type(exc).__name__})") from None

    def check(self) -> CheckResult:
        if not self.path.is_file():
            return CheckResult(False, f"{self.path} is not a file")
        return CheckResult(True, "ok")

    def find(self, subject: Subject) -> Iterator[Record]:
        emails = subject.values("email")
        for row in self._rows():
            if str(row.get("email", "")).strip().lower() in emails:
                yield Record("people", str(row["id"]), "profile", row)

    def plan_erasure(self, subject: Subject) -> ErasurePlan:
        plan = ErasurePlan(self.name)
        for record in self.find(subject):
            plan.items.append(PlanItem(record.collection, record.key, Action.DELETE))
        return plan

    def erase(self, plan: ErasurePlan) -> ErasureResult:
        doomed = {item.key for item in plan.items if item.action is Action.DELETE}
        kept = [row for row in self._rows() if str(row["id"]) not in doomed]
        handle, tmp = tempfile.mkstemp(dir=self.path.parent)
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            for row in kept:
                out.write(json.dumps(row) + "\\n")
        os.replace(tmp, self.path)
        return ErasureResult(deleted=len(doomed))
''',
    "tests/test_${name}.py": '''\
"""${cls} against dsar's conformance kit, on a freshly seeded store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dsar.connector import Subject
from dsar.testing import ConnectorContract
from ${package} import ${cls}

PEOPLE = [
    {"id": 1, "email": "ann@example.org", "name": "Ann"},
    {"id": 2, "email": "bob@example.org", "name": "Bob"},
    {"id": 3, "email": "ANN@example.org", "name": "Ann again"},
]


class Test${cls}Contract(ConnectorContract):
    @pytest.fixture
    def connector(self, tmp_path: Path) -> ${cls}:
        store = tmp_path / "people.jsonl"
        store.write_text("".join(json.dumps(p) + "\\n" for p in PEOPLE))
        return ${cls}("${name}", ${cls}.load_config({"path": str(store)}))

    @pytest.fixture
    def subject(self) -> Subject:
        return Subject({"email": {"ann@example.org"}})

    @pytest.fixture
    def other_subject(self) -> Subject:
        return Subject({"email": {"bob@example.org"}})

    @pytest.fixture
    def unreachable_connector(self, tmp_path: Path) -> ${cls}:
        return ${cls}("${name}", {"path": str(tmp_path / "missing.jsonl")})
''',
}


class ScaffoldError(ValueError):
    """The name or the target folder is not usable."""


def new_connector(name: str, parent: Path) -> Path:
    """Write the package ``dsar-connector-<name>`` under ``parent``; returns
    its folder. Refuses an existing folder or a name that is not a valid
    lower-case Python identifier."""
    if not NAME.match(name) or keyword.iskeyword(name):
        raise ScaffoldError(f"{name!r}: use lower-case letters, digits and _ (2-41 characters)")
    target = parent / f"dsar-connector-{name.replace('_', '-')}"
    if target.exists():
        raise ScaffoldError(f"{target} exists already")
    values = {"name": name, "dashed": name.replace("_", "-"),
              "package": f"dsar_connector_{name}",
              "cls": "".join(part.title() for part in name.split("_")) + "Connector"}
    for relative, text in FILES.items():
        path = target / Template(relative).substitute(values)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(Template(text).substitute(values), encoding="utf-8")
    return target
