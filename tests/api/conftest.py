"""Fixtures of the API tests: an app writing mails to a test outbox, its client."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from dsar.runtime import Runtime
from tests.api.helpers import Outbox

#: rate limits high enough not to get in the way of tests about something else
GENEROUS = {"RATE_LIMIT_SUBMIT": "1000 per minute", "RATE_LIMIT_VERIFY": "1000 per minute",
            "RATE_LIMIT_RESEND": "1000 per minute"}
#: dsar's loggers at DEBUG, so tests of what reaches the log see everything
VERBOSE = {"LOG_LEVEL": "DEBUG"}


@pytest.fixture
def outbox(tmp_path: Path) -> Outbox:
    return Outbox(tmp_path / "outbox")


@pytest.fixture
def make_api(make_app: Callable[..., Flask], outbox: Outbox) -> Callable[..., Flask]:
    """``make_app`` with the test outbox, generous limits and DEBUG logs (overridable)."""

    def factory(connectors: dict[str, dict[str, Any]] | None = None, **config: Any) -> Flask:
        settings = {"OUTBOX_DIR": str(outbox.path), **GENEROUS, **VERBOSE, **config}
        app = make_app(connectors, **settings)
        outbox.runtimes.append(app.extensions["dsar"])  # its queued mail, delivered on look
        return app

    return factory


@pytest.fixture
def api(make_api: Callable[..., Flask]) -> Flask:
    return make_api()


@pytest.fixture
def api_rt(api: Flask) -> Runtime:
    rt: Runtime = api.extensions["dsar"]
    return rt


@pytest.fixture
def client(api: Flask) -> FlaskClient:
    return api.test_client()
