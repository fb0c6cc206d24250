"""Golden file: the export bundle of a demo customer, as it leaves the system.

A demo customer's access request runs through the CLI on the three demo
stores (sql, maildir, slack export) with a frozen clock and seeded ids; the
zip is pinned three ways: its members in order with their zip times,
compression and sizes, the text of every member (the manifest, one JSON and
one CSV per collection), and the SHA-256 of the whole file, so the same
input gives the same bytes. SQLite only: the bundle does not depend on the
app database, and one golden file per output is enough.
"""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result
from flask import Flask
from syrupy.assertion import SnapshotAssertion

from dsar.demo import DemoInfo, customers_of
from dsar.runtime import Runtime
from tests.support.golden import demo_stores, frozen, golden  # noqa: F401

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

CUSTOMER = customers_of(3)[1]  # in all three stores, and Cc'd on another's mail


@pytest.fixture
def demo(tmp_path: Path) -> DemoInfo:
    return demo_stores(tmp_path / "instance")


def test_the_export_bundle_of_a_demo_customer(make_app: Callable[..., Flask], demo: DemoInfo,
                                              cli: Callable[..., Result], seeded: object,
                                              golden: SnapshotAssertion) -> None:  # noqa: F811
    app = make_app(CONNECTORS=str(demo.connector_file))
    rt: Runtime = app.extensions["dsar"]
    frozen(rt)
    submitted = cli("requests", "submit", "--kind", "access", "--email", CUSTOMER.email,
                    "--verified", "--json", app_=app)
    assert submitted.exit_code == 0, submitted.output
    processed = cli("requests", "process", "--workers", "1", "--timeout", "60", app_=app)
    assert processed.exit_code == 0, processed.output
    zips = list(Path(rt.settings["EXPORT_DIR"]).glob("*.zip"))
    assert len(zips) == 1, zips
    data = zips[0].read_bytes()
    with zipfile.ZipFile(zips[0]) as zf:
        infos = zf.infolist()
        listing = [f"{zips[0].name}  sha256 {hashlib.sha256(data).hexdigest()}  "
                   f"{len(data)} bytes"]
        listing += [f"{i.filename}  {i.date_time}  method {i.compress_type}  "
                    f"{i.file_size} bytes  crc {i.CRC:08x}  attr {i.external_attr >> 16:o}"
                    for i in infos]
        assert golden(name="members") == "\n".join(listing) + "\n"
        for info in infos:
            assert golden(name=info.filename.replace("/", "__")) == zf.read(info).decode("utf-8")
