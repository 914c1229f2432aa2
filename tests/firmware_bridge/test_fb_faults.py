"""Link faults end to end over a pty: a noisy line, a cut cable, delayed frames."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("mujoco")

from fb_helpers import drive, on_time, smoothstep_path, wait_for

from karakuri.firmware_bridge.fault_channel import FaultConfig
from karakuri.firmware_bridge.serial_link import SerialLink, SerialLinkConfig
from karakuri.firmware_bridge.virtual_mcu import (
    MujocoPlant,
    VirtualMCU,
    VirtualMCUConfig,
)
from karakuri.robot.link import StatusBits
from karakuri.robot.registry import load_robot

REACH = np.array([0.4, 0.3, -0.3, 0.2, 0.2, 0.3, -0.02])


@pytest.fixture(scope="module")
def spec():
    return load_robot("industrial_arm")


def settled_tool_position(spec, q: np.ndarray) -> np.ndarray:
    """Where the tool comes to rest with the servo holding ``q`` and no link in between, m."""
    plant = MujocoPlant(spec)
    for _ in range(600):
        plant.step(q, np.zeros_like(q), np.zeros_like(q))
    return plant.data.site_xpos[plant.site].copy()


def test_noisy_line_never_applies_a_corrupted_command_and_the_reach_succeeds(spec, tmp_path):
    """1 % of bytes corrupted and 1 % of frames dropped, both ways, for the whole episode."""
    faults = FaultConfig(corrupt_byte_rate=0.01, drop_frame_rate=0.01, fault_seed=7)
    cfg = VirtualMCUConfig(link_path=str(tmp_path / "tty"), record_commands=True)
    goal = spec.default_pose + REACH
    sent: set[bytes] = set()

    def episode():
        with VirtualMCU(spec, cfg, faults) as mcu, \
                SerialLink(spec, SerialLinkConfig(port=mcu.port)) as link:
            late = drive(link, smoothstep_path(spec.default_pose, goal, 1.2), 1.8, sent=sent)
            return (mcu.tool_position(), mcu.command_log, mcu.counters(), link.counters()), late

    tool, applied, counts, host = on_time(episode)
    # The corruption reached both ends and was caught there.
    assert counts["rx_bytes_corrupted"] > 50 and counts["crc_errors"] > 10
    assert counts["rx_frames_dropped"] >= 1 and counts["seq_gaps"] > 10
    assert host.crc_errors > 10 and host.seq_gaps > 10
    # No corrupted command was applied: every applied target is one the host sent.
    assert len(applied) > 60
    assert all(q.tobytes() in sent for _, _, q in applied)
    # The repeated COMMANDs kept the watchdog fed; the robot reached the goal.
    assert counts["watchdog_trips"] == 0
    assert np.linalg.norm(tool - settled_tool_position(spec, goal)) < 0.01


def test_cut_link_stops_the_robot_within_50ms_and_the_host_reports_it(spec, tmp_path):
    cfg = VirtualMCUConfig(link_path=str(tmp_path / "tty"), record_commands=True)
    goal = spec.default_pose + REACH
    with VirtualMCU(spec, cfg) as mcu, SerialLink(spec, SerialLinkConfig(port=mcu.port)) as link:
        drive(link, smoothstep_path(spec.default_pose, goal, 0.6), 0.3)  # mid-motion
        mcu.cut_link()
        drive(link, smoothstep_path(spec.default_pose, goal, 0.6), 0.3)  # into the void
        events = mcu.events
        t_cut = next(t for t, e in events if e == "link cut")
        t_trip, text = next((t, e) for t, e in events if "stop (WATCHDOG)" in e)
        assert t_trip - t_cut <= 0.050 + 1e-6  # simulated time
        ramp_s = float(text.split("ramp ")[1].split(" ms")[0]) / 1e3
        assert 0.0 < ramp_s < 0.3  # it was moving, and decelerates at the accel limit
        wait_for(lambda: mcu.sim_time > t_trip + ramp_s + 0.1, 1.0, "the stop to settle")
        assert np.abs(mcu.joint_state()[1]).max() < 0.02  # at rest, rad/s
        q_stop = mcu.joint_state()[0]
        assert np.abs(q_stop - goal).max() > 0.05  # stopped short of the goal: no more commands
        # The host saw the STATE stream stop.
        wait_for(lambda: link.counters().timeouts >= 1, 1.0, "a STATE timeout")
        assert any("no STATE" in f for f in link.faults())
        mcu.restore_link()
        wait_for(lambda: any("WATCHDOG" in f for f in link.faults()), 1.5, "the repeated FAULT")
        assert link.latest_state().status == StatusBits.FAULT | StatusBits.WATCHDOG


def test_delayed_frames_keep_order(spec, tmp_path):
    faults = FaultConfig(delay_frame_rate=0.05, delay_s=0.01, fault_seed=3)
    cfg = VirtualMCUConfig(link_path=str(tmp_path / "tty"))

    def run():
        with VirtualMCU(spec, cfg, faults) as mcu, \
                SerialLink(spec, SerialLinkConfig(port=mcu.port)) as link:
            late = drive(link, lambda t: spec.default_pose, 0.5)
            return (mcu.counters(), link.counters()), late

    counts, host = on_time(run)
    assert counts["rx_frames_delayed"] > 0 and counts["tx_frames_delayed"] > 0
    assert host.extra["seq_reordered"] == 0 and host.seq_gaps == 0
    assert counts["watchdog_trips"] == 0


def test_fault_config_names_bad_values():
    with pytest.raises(ValueError, match=r"drop_frame_rate=1.5 must be a probability in \[0, 1\]"):
        FaultConfig(drop_frame_rate=1.5)
    with pytest.raises(ValueError, match="fault_direction='up'; allowed: 'rx'"):
        FaultConfig(fault_direction="up")  # type: ignore[arg-type]
