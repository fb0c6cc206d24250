"""Named fault points, so crash tests can stop a process at an exact moment.

A test starts a worker process with ``DSAR_TEST_FAULTS=<point>=<action>[,...]``
in its environment, or sets :data:`ACTIONS` in-process. At a named point the
process then acts:

* ``kill``: SIGKILL itself (a crash: nothing is flushed, nothing cleaned up);
* ``raise``: raise :class:`FaultInjected` (any failure at that moment);
* ``sleep:<seconds>``: pause there (a slow step, a window to act in).

Unset, which is always the case outside tests, a point costs a dict lookup.
The points are listed where they are placed (``faults.point("...")``).
"""

from __future__ import annotations

import os
import signal
import time

ENV = "DSAR_TEST_FAULTS"


class FaultInjected(RuntimeError):
    """Raised at a fault point whose action is ``raise``."""


def _parse(raw: str) -> dict[str, str]:
    pairs = (item.split("=", 1) for item in raw.split(",") if "=" in item)
    return {name.strip(): action.strip() for name, action in pairs}


#: point name -> action; tests may change it in-process
ACTIONS: dict[str, str] = _parse(os.environ.get(ENV, ""))


def point(name: str) -> None:
    """Act here if a test asked for it (see the module docstring)."""
    action = ACTIONS.get(name)
    if not action:
        return
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(10)  # the signal is asynchronous; never run past the point
    elif action == "raise":
        raise FaultInjected(name)
    elif action.startswith("sleep:"):
        time.sleep(float(action.split(":", 1)[1]))
