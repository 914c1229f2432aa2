"""SerialLink against the virtual MCU over a real pty: handshake, state, errors, reconnect."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

pytest.importorskip("mujoco")

from fb_helpers import drive, on_time, smoothstep_path, wait_for

from karakuri.firmware_bridge.protocol import Hello, encode_frame
from karakuri.firmware_bridge.serial_link import (
    CommandError,
    HandshakeError,
    SerialLink,
    SerialLinkConfig,
)
from karakuri.firmware_bridge.virtual_mcu import VirtualMCU, VirtualMCUConfig
from karakuri.robot.link import (
    CommandMode,
    Link,
    LinkError,
    NotConnectedError,
    StatusBits,
)
from karakuri.robot.registry import load_robot
from karakuri.robot.spec import RobotSpec


@pytest.fixture(scope="module")
def spec() -> RobotSpec:
    return load_robot("industrial_arm")


@pytest.fixture
def mcu(spec, tmp_path):
    with VirtualMCU(spec, VirtualMCUConfig(link_path=str(tmp_path / "tty"),
                                           record_commands=True)) as m:
        yield m


@pytest.fixture
def link(spec, mcu):
    with SerialLink(spec, SerialLinkConfig(port=mcu.port)) as ln:
        yield ln


def test_connect_handshakes_streams_state_and_arms_with_the_first_command(spec, mcu, link):
    assert isinstance(link, Link) and link.is_connected and link.link_up
    assert link.caps.joint_hash == spec.joint_hash()
    assert link.caps.watchdog_us == 50_000  # 50 Hz: min(3 x 20 ms, 50 ms)
    state = link.latest_state()
    assert state.position.shape == (7,) and state.status == StatusBits.NONE  # holding, disarmed
    np.testing.assert_allclose(state.position, spec.default_pose, atol=0.02)
    seq = state.seq
    wait_for(lambda: link.latest_state().seq != seq, 0.5, "a newer STATE")
    assert link.ping() < 0.1
    drive(link, lambda t: spec.default_pose, 0.1)
    assert link.latest_state().status == StatusBits.ARMED
    assert mcu.counters()["commands_ignored"] == 0  # ARM went out just before the first one


def test_commands_move_the_plant_and_round_trips_are_measured(spec, tmp_path):
    q1 = spec.default_pose + np.array([0.3, 0.2, -0.2, 0.1, 0.1, 0.2, -0.02])

    def run():
        with VirtualMCU(spec) as mcu, SerialLink(spec, SerialLinkConfig(port=mcu.port)) as link:
            tool0 = mcu.tool_position()
            late = drive(link, smoothstep_path(spec.default_pose, q1, 0.4), 0.7)
            return (link.latest_state(), mcu.tool_position() - tool0, mcu.applied_commands,
                    link.round_trip_times(), link.counters(), mcu.events), late

    state, moved, applied, rtt, c, events = on_time(run)
    np.testing.assert_allclose(state.position, q1, atol=0.03, err_msg=str(events))
    assert np.linalg.norm(moved) > 0.1
    assert applied >= 35
    assert rtt.size >= 20 and np.all(rtt > 0) and np.median(rtt) < 0.05
    assert c.frames_rx > 30 and c.crc_errors == 0 and c.seq_gaps == 0


def test_used_while_disconnected_raises_a_typed_error(spec, mcu):
    link = SerialLink(spec, SerialLinkConfig(port=mcu.port))
    with pytest.raises(NotConnectedError, match=r"send_command\(\) .* before connect"):
        link.send_command(spec.default_pose)
    with pytest.raises(NotConnectedError, match="latest_state"):
        link.latest_state()
    link.connect()
    link.close()
    link.close()  # twice is fine
    for call in (link.latest_state, link.estop, link.rearm):
        with pytest.raises(NotConnectedError):
            call()
    assert link.counters().frames_rx > 0 and link.faults() == []


def test_missing_port_is_named(spec, tmp_path):
    port = str(tmp_path / "no-such-tty")
    with pytest.raises(LinkError, match=f"cannot open serial port '{port}'"):
        SerialLink(spec, SerialLinkConfig(port=port)).connect()


def test_handshake_rejects_another_robot_and_names_both_sides(spec, mcu):
    arm = ("shoulder_lift", "shoulder_pan", *spec.arm_joints[2:])
    other = dataclasses.replace(spec, joint_names=arm + spec.gripper_joints, arm_joints=arm)
    with pytest.raises(HandshakeError) as e:
        SerialLink(other, SerialLinkConfig(port=mcu.port)).connect()
    msg = str(e.value)
    assert f"0x{spec.joint_hash():08x}" in msg and f"0x{other.joint_hash():08x}" in msg
    assert "another robot or another joint order" in msg
    assert mcu.mode.value == "disarmed"  # it was never armed


def test_no_answer_names_what_was_received(spec, tmp_path):
    with VirtualMCU(spec, VirtualMCUConfig(link_path=str(tmp_path / "tty"))) as mcu:
        mcu.cut_link()
        cfg = SerialLinkConfig(port=mcu.port, handshake_timeout_s=0.3)
        with pytest.raises(LinkError, match=r"no CAPS from .* within 0.3 s.*received \d+ bytes"):
            SerialLink(spec, cfg).connect()


def test_bad_commands_are_refused_with_the_joint_named(spec, link):
    with pytest.raises(CommandError, match=r"shape \(6,\); robot 'industrial_arm' has 7 joints"):
        link.send_command(np.zeros(6))
    q = spec.default_pose.copy()
    q[2] = np.nan
    with pytest.raises(CommandError, match=r"q_target\[2\] \(elbow\) is nan"):
        link.send_command(q)
    assert isinstance(CommandError("x"), LinkError)  # the control loop catches LinkError


def test_garbage_from_the_mcu_is_counted_and_skipped(spec, mcu, link):
    bad = bytearray(encode_frame(Hello(1), 1, 0))
    bad[4] ^= 0x10
    mcu.send_raw(b"\x01\x02 line noise \xff\x00" + bytes(bad) + b"\xff" * 2000 + b"\x00")
    seq = link.latest_state().seq
    wait_for(lambda: link.counters().crc_errors >= 1, 1.0, "the CRC error to be counted")
    c = link.counters()
    assert c.length_errors >= 2
    wait_for(lambda: link.latest_state().seq != seq, 1.0, "STATE after the garbage")


def test_estop_latches_and_rearm_holds_then_moves(spec, mcu, link):
    q1 = spec.default_pose + np.array([0.2, 0, 0, 0, 0, 0, 0])
    drive(link, lambda t: q1, 0.1)
    link.estop()
    wait_for(lambda: link.latest_state().status & StatusBits.FAULT, 1.0, "ESTOP stop done")
    assert link.latest_state().status & StatusBits.ESTOP
    wait_for(lambda: any("ESTOP" in f for f in link.faults()), 1.0, "the ESTOP fault")
    ignored = mcu.counters()["commands_ignored"]
    drive(link, lambda t: spec.default_pose, 0.1)
    assert mcu.counters()["commands_ignored"] > ignored
    link.rearm()
    wait_for(lambda: link.latest_state().status == StatusBits.ARMED, 1.0, "re-armed")
    held = link.latest_state().position
    drive(link, lambda t: held, 0.1, sent=None)
    link.send_command(held, CommandMode.HOLD)
    drive(link, smoothstep_path(held, spec.default_pose, 0.3), 0.5)
    np.testing.assert_allclose(link.latest_state().position, spec.default_pose, atol=0.03)


def test_stopping_the_host_trips_the_watchdog_and_the_host_reports_it(spec, mcu, link):
    drive(link, lambda t: spec.default_pose, 0.2)
    fresh_t = mcu.sim_time
    wait_for(lambda: link.latest_state().status & StatusBits.WATCHDOG, 1.0, "watchdog")
    last_cmd_t = mcu.command_log[-1][0]
    assert last_cmd_t - fresh_t < 0.020 + 0.004  # resends stop within one command period
    trip = next(t for t, e in mcu.events if "WATCHDOG" in e and "stop" in e)
    # Resends keep feeding for < 1 command period after the last fresh command: the trip comes
    # 50 ms (simulated) after the last COMMAND frame the MCU got, never later.
    assert 0.045 <= trip - last_cmd_t <= 0.050 + 1e-6
    wait_for(lambda: any("WATCHDOG" in f for f in link.faults()), 1.0, "the WATCHDOG fault")


def test_reconnects_after_the_port_disappears_and_never_rearms_by_itself(spec, mcu, link):
    drive(link, lambda t: spec.default_pose, 0.1)
    mcu.unplug()
    wait_for(lambda: not link.link_up, 1.0, "the link to notice the lost port")
    assert any("lost" in f for f in link.faults())
    link.send_command(spec.default_pose)  # dropped and counted, not raised
    assert link.counters().extra["tx_dropped"] >= 1
    assert link.is_connected
    mcu.replug()
    wait_for(lambda: link.link_up, 3.0, "the link to reopen the port")
    assert link.counters().reconnects == 1
    wait_for(lambda: link.latest_state().status & StatusBits.FAULT, 1.0, "STATE after reopen")
    assert not link.latest_state().status & StatusBits.ARMED  # tripped while unplugged
    link.rearm()
    wait_for(lambda: link.latest_state().status == StatusBits.ARMED, 1.0, "re-armed")
    n = mcu.applied_commands
    drive(link, lambda t: spec.default_pose, 0.1)
    assert mcu.applied_commands > n


def test_second_host_on_the_same_port_is_refused_naming_the_pid(spec, mcu, link):
    """Finding 3: two hosts on one port interleave their COMMANDs; the second must not start."""
    import os

    real_path = os.path.realpath(mcu.port)  # the link path and the pty are one port
    for port in (mcu.port, real_path):
        other = SerialLink(spec, SerialLinkConfig(port=port, handshake_timeout_s=0.5))
        with pytest.raises(LinkError, match=rf"port {port} in use by PID {os.getpid()} "):
            other.connect()
        assert not other.is_connected
    link.close()  # the lock goes with the first host
    again = SerialLink(spec, SerialLinkConfig(port=mcu.port))
    again.connect()
    again.close()


def test_caps_limits_are_reported_for_the_envelope(spec, link):
    lim = link.reported_limits()
    assert lim.source.startswith("MCU CAPS on ")
    np.testing.assert_allclose(lim.upper, spec.upper, rtol=1e-6)
    np.testing.assert_allclose(lim.velocity_limit, spec.velocity_limit, rtol=1e-6)
    assert np.all(np.isposinf(lim.accel_limit))  # CAPS carries none
    assert link.watchdog_s == pytest.approx(0.05)
