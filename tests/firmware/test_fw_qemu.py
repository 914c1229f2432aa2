"""The firmware as an ARM binary on QEMU mps2-an386, driven by the real host over its pty.

Each test boots the board (about 0.1 s), connects a :class:`SerialLink` and checks one claim
of docs/firmware.md: the joints track, the watchdog stops them within the spec's time, ESTOP
latches until a new ARM, and a 1 % noisy line is rejected and counted on both sides.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from karakuri.firmware_bridge.fault_injection import FaultConfig
from karakuri.firmware_bridge.firmware.qemu import QemuBoard, QemuLinkConfig
from karakuri.firmware_bridge.link import JointState, StatusBits
from karakuri.firmware_bridge.serial_link import SerialLink, SerialLinkConfig
from karakuri.robot.registry import load_robot

SPEC = load_robot("industrial_arm")
RATE_HZ = 50.0


class Recorder:
    """Polls ``latest_state`` every millisecond and keeps each new STATE (by device time)."""

    def __init__(self, link: SerialLink) -> None:
        self.link, self.states = link, []
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
            time.sleep(0.001)

    def stop(self) -> list[JointState]:
        self._stop.set()
        self._thread.join()
        return self.states


def _connect(board: QemuBoard) -> SerialLink:
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
    """

    host_late_s: float = 0.0
    board_step_ms: int = 0

    def disturbed(self) -> bool:
        return self.host_late_s > 0.025 or self.board_step_ms > 20

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
                raise
            seen.append(f"{str(e).splitlines()[0][:100]} (host {timing.host_late_s * 1e3:.0f} ms "
                        f"late, board step {timing.board_step_ms} ms)")
    pytest.skip(f"host or emulator lost real time in all {attempts} attempts (machine "
                f"overloaded), so no timing claim can be judged: {'; '.join(seen)}")


def _wait_status(link: SerialLink, bits: StatusBits, timeout: float = 2.0) -> JointState:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = link.latest_state()
        if s is not None and s.status & bits == bits:
            return s
        time.sleep(0.002)
    raise AssertionError(f"no STATE with {bits!r} within {timeout} s; last "
                         f"{link.latest_state()}; faults {link.faults()}")


def _drive(link: SerialLink, target: np.ndarray, seconds: float,
           timing: Timing | None = None) -> None:
    t0 = time.monotonic()
    for k in range(round(seconds * RATE_HZ)):
        deadline = t0 + k / RATE_HZ
        time.sleep(max(0.0, deadline - time.monotonic()))
        if timing is not None:
            timing.host_late_s = max(timing.host_late_s, time.monotonic() - deadline)
        link.send_command(target)


def test_board_boots_and_joints_track_without_speeding(firmware_elf: Path) -> None:
    def attempt(timing: Timing) -> None:
        with QemuBoard(QemuLinkConfig(firmware=firmware_elf)) as board:
            link = _connect(board)
            try:
                caps = link.caps
                assert caps is not None and caps.servo_period_us == 1000
                assert caps.watchdog_us == 50_000 and caps.n_joints == SPEC.n_joints
                rec = Recorder(link)
                start = link.latest_state()
                target = start.position + np.array([0.6, -0.3, 0.4, 0.0, 0.5, -0.5, -0.02])
                _drive(link, target, 1.5, timing)
                states = rec.stop()
                timing.board(board, start.device_time_us)
                final = link.latest_state()
            finally:
                link.close()
            stats = board.stats()
        assert final.status == StatusBits.ARMED, link.faults()
        np.testing.assert_allclose(final.position, target, atol=5e-3)
        speeds = np.abs(np.array([s.velocity for s in states]))
        assert np.all(speeds <= SPEC.velocity_limit + 1e-4)
        assert stats["commands_applied"] > 50 and stats["watchdog_trips"] == 0, stats

    on_time(attempt)


def test_watchdog_stops_moving_joints_within_the_spec_time(firmware_elf: Path) -> None:
    def attempt(timing: Timing) -> None:
        with QemuBoard(QemuLinkConfig(firmware=firmware_elf)) as board:
            link = _connect(board)
            try:
                start = link.latest_state()
                far = start.position.astype(np.float64)
                far[0] += 2.0  # shoulder_pan slews toward it at its velocity limit
                _drive(link, far, 0.4, timing)
                rec = Recorder(link)
                moving = link.latest_state()
                s = _wait_status(link, StatusBits.FAULT | StatusBits.WATCHDOG, timeout=2.0)
                time.sleep(0.15)
                states = rec.stop()
                timing.board(board, start.device_time_us)
            finally:
                link.close()
        assert abs(moving.velocity[0]) > 1.0, moving
        text = " ".join(link.faults())
        m = re.search(r"WATCHDOG at t=[\d.]+ s: no valid COMMAND for ([\d.]+) ms", text)
        assert m, text
        assert 50.0 <= float(m.group(1)) <= 51.0  # tripped on the first servo tick past 50 ms
        trip_us = next(x.device_time_us for x in states if x.status & StatusBits.WATCHDOG)
        ramp_s = SPEC.velocity_limit[0] / SPEC.accel_limit[0]  # the longest stop from full speed
        assert (s.device_time_us - trip_us) * 1e-6 <= ramp_s + 0.05
        after = [x for x in states if x.status & StatusBits.FAULT]
        assert np.all(np.abs(after[-1].velocity) < 1e-3), after[-1]
        assert np.all(np.ptp([x.position for x in after[-3:]], axis=0) < 1e-3)  # it holds
        assert after[-1].position[0] <= SPEC.upper[0] + 1e-6

    on_time(attempt)


def test_estop_latches_until_a_new_arm(firmware_elf: Path) -> None:
    with QemuBoard(QemuLinkConfig(firmware=firmware_elf)) as board:
        link = _connect(board)
        try:
            q0 = link.latest_state().position.astype(np.float64)
            _drive(link, q0 + 0.1, 0.3)
            link.estop()
            s = _wait_status(link, StatusBits.FAULT | StatusBits.ESTOP)
            _drive(link, q0 - 0.2, 0.6)  # ignored: the robot holds
            s = link.latest_state()
            assert s.status & StatusBits.ESTOP and not s.status & StatusBits.ARMED
            held = s.position.copy()
            time.sleep(0.3)
            stats = board.stats()
            assert stats["commands_ignored"] > 0 and stats["estops"] >= 1, stats
            np.testing.assert_allclose(link.latest_state().position, held, atol=1e-4)
            link.rearm()
            s = _wait_status(link, StatusBits.ARMED)
            assert not s.status & (StatusBits.ESTOP | StatusBits.FAULT)
            np.testing.assert_allclose(s.position, held, atol=1e-3)  # armed where it stood
        finally:
            link.close()


def test_one_percent_corrupted_bytes_are_rejected_and_counted_on_both_sides(
        firmware_elf: Path) -> None:
    def attempt(timing: Timing) -> None:
        faults = FaultConfig(corrupt_byte_rate=0.01, fault_seed=3)
        with QemuBoard(QemuLinkConfig(firmware=firmware_elf, faults=faults)) as board:
            link = _connect(board)
            try:
                start = link.latest_state()
                target = start.position + np.array([0.3, -0.2, 0.2, 0.1, 0.2, -0.2, -0.01])
                rec = Recorder(link)
                _drive(link, target, 3.0, timing)
                states = rec.stop()
                host = link.counters()
            finally:
                link.close()
            timing.board(board, start.device_time_us)
            fw = board.stats()
            proxy = board.proxy
        assert proxy is not None
        assert proxy.to_device.stats.bytes_corrupted > 20
        assert proxy.to_host.stats.bytes_corrupted > 5
        assert host.crc_errors + host.length_errors > 0, host
        assert fw["crc_errors"] + fw["length_errors"] > 0, fw
        assert fw["watchdog_trips"] == 0 and fw["commands_applied"] > 100, fw
        assert all(s.status & StatusBits.ARMED for s in states[5:]), "stopped on a noisy line"
        np.testing.assert_allclose(states[-1].position, target, atol=5e-3)

    on_time(attempt)
