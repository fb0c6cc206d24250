"""Two erasures of one connector instance at once (worker threads share it):
Alice's paused at a point the test chooses, Bob's started meanwhile."""

from __future__ import annotations

import threading

from dsar.connector import Connector, ErasurePlan


def erase_together(connector: Connector, plans: dict[str, ErasurePlan],
                   paused: threading.Event, resume: threading.Event) -> list[BaseException]:
    """Run Alice's erasure (thread "alice") until it sets ``paused``, then
    Bob's; let Alice go on once Bob's has had time to finish if nothing
    holds it back. Returns what either raised."""
    errors: list[BaseException] = []

    def erase(name: str) -> None:
        try:
            connector.erase(plans[name])
        except BaseException as exc:  # reported to the test
            errors.append(exc)

    alice = threading.Thread(target=erase, args=("alice",), name="alice")
    alice.start()
    assert paused.wait(10)
    bob = threading.Thread(target=erase, args=("bob",), name="bob")
    bob.start()
    bob.join(0.5)  # without the store's lock Bob's erasure runs to its end meanwhile
    resume.set()
    alice.join(10)
    bob.join(10)
    return errors
