"""Helpers of the QEMU tests: a STATE recorder, a host that sends on deadlines, and a retry
that tells the machine's load apart from the firmware's behaviour."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

from karakuri.firmware_bridge.firmware.qemu import QemuBoard
from karakuri.firmware_bridge.serial_link import SerialLink, SerialLinkConfig
from karakuri.robot.link import JointState, StatusBits
from karakuri.robot.registry import load_robot

SPEC = load_robot("industrial_arm")
RATE_HZ = 50.0


class Recorder:
    """Polls ``latest_state`` every ``period_s`` and keeps each new STATE (by device time)."""

    def __init__(self, link: SerialLink, period_s: float = 0.001) -> None:
        self.link, self.states, self.period_s = link, [], period_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        last = None
        while not self._stop.is_set():
            s = self.link.latest_state()
            if s is not None and s.device_time_us != last:
                last = s.device_time_us
                self.states.append(s)
            time.sleep(self.period_s)

    def stop(self) -> list[JointState]:
        """Stop polling; the STATEs seen, oldest first."""
        self._stop.set()
        self._thread.join()
        return self.states


def connect(board: QemuBoard) -> SerialLink:
    """The production host link on the board's pty: HELLO/CAPS, then armed with the first
    COMMAND."""
    link = SerialLink(SPEC, SerialLinkConfig(port=board.port, command_rate_hz=RATE_HZ,
                                             arm_on_connect=True, handshake_timeout_s=5.0))
    link.connect()
    return link


@dataclass
class Timing:
    """Whether host and board kept real time in an attempt (2 shared cores can stall both).

    Attributes:
        host_late_s: Latest any host COMMAND left after its deadline, s.
        board_step_ms: Longest servo step on the board's clock while driving (1 = on time), ms.
        link_rtt_s: Longest COMMAND sent -> STATE showing it applied, s (QEMU's I/O thread
            moves UART bytes one at a time; starved, it delays them with both ends on time).
        line_backlog: Most bytes the fault proxy ever held for the board (QEMU's UART takes
            about 10 KB/s here; a 7-joint host at 50 Hz with 5 ms repeats sends 9 KB/s).
        proxy_stall_s: Longest pause of the fault proxy's relay thread, s.
    """

    host_late_s: float = 0.0
    board_step_ms: int = 0
    link_rtt_s: float = 0.0
    line_backlog: int = 0
    proxy_stall_s: float = 0.0

    def disturbed(self) -> bool:
        return (self.host_late_s > 0.02 or self.board_step_ms > 15 or self.link_rtt_s > 0.03
                or self.line_backlog > 200 or self.proxy_stall_s > 0.02)

    def board_at(self, board: QemuBoard, until_us: int) -> dict[str, int]:
        """The firmware's counters as of board time ``until_us`` (its last line before it:
        a host that stops sending trips the watchdog 50 ms later, as it should)."""
        time.sleep(0.3)  # the next KKSTAT line
        lines = [s for s in board.stats_history() if s["t_ms"] * 1000 <= until_us]
        assert lines, f"no KKSTAT line before {until_us} µs"
        return lines[-1]

    def link(self, link: SerialLink) -> None:
        rtt = link.round_trip_times()
        self.link_rtt_s = float(rtt.max()) if rtt.size else 0.0

    def board(self, board: QemuBoard, since_us: int) -> None:
        time.sleep(0.3)  # the next KKSTAT line
        steps = [s["window_step_ms"] for s in board.stats_history()
                 if s["t_ms"] * 1000 > since_us]
        self.board_step_ms = max(steps, default=0)


def on_time(attempt: Callable[[Timing], None], attempts: int = 3) -> None:
    """Run ``attempt`` until it passes; an attempt that failed while the host or the board
    lost real time (the machine's load, not the firmware) is repeated, then skipped."""
    seen = []
    for _ in range(attempts):
        timing = Timing()
        try:
            attempt(timing)
            return
        except AssertionError as e:
            if not timing.disturbed():
                e.add_note(f"kept time: {timing}")
                raise
            seen.append(f"{str(e).splitlines()[0][:100]} (host {timing.host_late_s * 1e3:.0f} ms "
                        f"late, board step {timing.board_step_ms} ms, link round trip "
                        f"{timing.link_rtt_s * 1e3:.0f} ms, line backlog {timing.line_backlog} B, "
                        f"proxy stall {timing.proxy_stall_s * 1e3:.0f} ms)")
    pytest.skip(f"host or emulator lost real time in all {attempts} attempts (machine "
                f"overloaded), so no timing claim can be judged: {'; '.join(seen)}")


def wait_status(link: SerialLink, bits: StatusBits, timeout: float = 2.0) -> JointState:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = link.latest_state()
        if s is not None and s.status & bits == bits:
            return s
        time.sleep(0.002)
    raise AssertionError(f"no STATE with {bits!r} within {timeout} s; last "
                         f"{link.latest_state()}; faults {link.faults()}")


def drive(link: SerialLink, target: np.ndarray, seconds: float,
           timing: Timing | None = None) -> None:
    t0 = time.monotonic()
    for k in range(round(seconds * RATE_HZ)):
        deadline = t0 + k / RATE_HZ
        time.sleep(max(0.0, deadline - time.monotonic()))
        if timing is not None:
            timing.host_late_s = max(timing.host_late_s, time.monotonic() - deadline)
        link.send_command(target)
