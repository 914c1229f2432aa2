"""Shared helpers of the firmware_bridge tests (a real pty, a virtual MCU, a scripted host)."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from karakuri.firmware_bridge.serial_link import SerialLink


def wait_for(cond: Callable[[], object], timeout: float = 2.0, what: str = "condition") -> None:
    """Poll ``cond`` every 5 ms until true; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.005)


def smoothstep_path(q0: np.ndarray, q1: np.ndarray, move_s: float) -> Callable[[float], np.ndarray]:
    """Joint-space path from ``q0`` to ``q1`` in ``move_s`` s, then holding ``q1``."""
    def q(t: float) -> np.ndarray:
        s = min(max(t / move_s, 0.0), 1.0)
        return q0 + (q1 - q0) * s * s * (3 - 2 * s)
    return q


LATE_S = 0.025
"""A host send this late (on 2 shared cores under load) can starve the 50 ms watchdog."""


def drive(link: SerialLink, path: Callable[[float], np.ndarray], seconds: float,
          rate_hz: float = 50.0, sent: set[bytes] | None = None) -> float:
    """Send ``path(t)`` at ``rate_hz`` on absolute deadlines for ``seconds``.

    Returns:
        The latest any send came after its deadline, s (the machine's load, not the code's).
    """
    t0, late = time.monotonic(), 0.0
    for k in range(round(seconds * rate_hz)):
        deadline = t0 + k / rate_hz
        time.sleep(max(0.0, deadline - time.monotonic()))
        late = max(late, time.monotonic() - deadline)
        q = path(k / rate_hz)
        if sent is not None:
            sent.add(np.asarray(q, np.float32).tobytes())
        link.send_command(q)
    return late


def on_time(scenario: Callable[[], tuple[object, float]], attempts: int = 3) -> object:
    """Run ``scenario`` (returning ``(result, host lateness s)``) until the host kept time.

    Timing claims (no watchdog trip) only hold when the host sent on time; a run that a loaded
    machine delayed by more than :data:`LATE_S` is repeated, and failing that, fails.
    """
    lates = []
    for _ in range(attempts):
        result, late = scenario()
        if late <= LATE_S:
            return result
        lates.append(round(late * 1e3, 1))
    raise AssertionError(f"the host was late by {lates} ms in every attempt: machine overloaded")
