"""Console fixtures: an app on a frozen, movable clock (TOTP codes and
session lifetimes follow it), errors propagating, and officers' browsers."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from flask import Flask

from dsar.clock import MovableClock
from tests.console.client import Console

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def console_app(make_app: Callable[..., Flask]) -> Flask:
    app = make_app(TESTING=True)
    app.extensions["dsar"].clock = MovableClock(START)
    return app


@pytest.fixture
def console(console_app: Flask) -> Console:
    return Console(console_app)
