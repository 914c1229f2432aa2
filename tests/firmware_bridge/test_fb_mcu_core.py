"""MCU behaviour on a hand-driven clock: handshake, watchdog, stop ramp, e-stop latch, re-arm."""

from __future__ import annotations

import numpy as np
import pytest

from karakuri.firmware_bridge.mcu_core import McuCore, McuLimits, McuMode
from karakuri.firmware_bridge.protocol import (
    Ack,
    AckResult,
    Arm,
    Caps,
    Command,
    Estop,
    Fault,
    FaultCode,
    FrameDecoder,
    Heartbeat,
    Hello,
    Message,
    MsgType,
    State,
    encode_frame,
)
from karakuri.robot.link import CommandMode, StatusBits

DT = 0.002
N = 3


class Rig:
    """An McuCore, a host-side decoder and a clock on the servo grid."""

    def __init__(self, **kw) -> None:
        lim = McuLimits(0xABCD, -np.ones(N), np.ones(N), np.full(N, 2.0), np.full(N, 10.0),
                        np.full(N, 10.0))
        self.core = McuCore(lim, DT, 0.02, **kw)
        self.q, self.dq = np.zeros(N), np.zeros(N)
        self.core.reset(self.q)
        self.k, self.seq, self.arm_id = 0, 0, 0
        self.host = FrameDecoder()

    @property
    def t(self) -> float:
        return self.k * DT

    def send(self, msg: Message) -> list[Message]:
        self.seq += 1
        out = self.core.receive(encode_frame(msg, self.seq, 0), self.t, self.q, self.dq)
        return [f.msg for f in self.host.feed(b"".join(out))]

    def run(self, seconds: float) -> list[tuple[float, Message]]:
        got = []
        for _ in range(round(seconds / DT)):
            self.k += 1
            out = self.core.tick(self.t, self.q, self.dq, np.zeros(N))
            got += [(self.t, f.msg) for f in self.host.feed(b"".join(out))]
        return got

    def feed(self, cmd: Command, seconds: float, period: float = 0.02) -> list[tuple[float, Message]]:
        """Send ``cmd`` every ``period`` s for ``seconds`` s (keeps the watchdog fed)."""
        got = []
        for _ in range(round(seconds / period)):
            self.send(cmd)
            got += self.run(period)
        return got

    def arm(self, repeat: bool = False) -> list[Message]:
        self.arm_id += not repeat
        return self.send(Arm(self.arm_id))

    def armed(self, period_us: int = 20000) -> Rig:
        self.send(Hello(period_us))
        assert self.arm() == [Ack(MsgType.ARM, self.seq, AckResult.OK)]
        return self


def faults(got):
    return [(t, m) for t, m in got if isinstance(m, Fault)]


def test_hello_answers_caps_with_watchdog_and_state_period():
    rig = Rig()
    (caps,) = rig.send(Hello(20000, 3000))
    assert isinstance(caps, Caps)
    assert (caps.joint_hash, caps.n_joints, caps.servo_period_us) == (0xABCD, N, 2000)
    assert caps.watchdog_us == 50000  # min(3 x 20 ms, 50 ms)
    assert caps.state_period_us == 2000  # 3 ms rounded down to the 2 ms servo grid
    (caps,) = rig.send(Hello(2000))
    assert caps.watchdog_us == 6000
    assert caps.state_period_us == 2000  # the 20 ms default, capped at the command period
    (caps,) = rig.send(Hello(40000))
    assert caps.state_period_us == 20000  # the MCU default (20 ms) when it is faster
    (caps,) = rig.send(Hello(10))
    assert caps.command_period_us == 2000  # clamped to the servo period


def test_arm_before_hello_is_refused_and_commands_are_ignored_until_armed():
    rig = Rig()
    assert rig.arm() == [Ack(MsgType.ARM, 1, AckResult.NOT_CONFIGURED)]
    rig.send(Command(CommandMode.POSITION, [0.5] * N))
    assert rig.core.counters.commands_ignored == 1
    np.testing.assert_array_equal(rig.core.q_ref, 0.0)
    assert rig.core.status == StatusBits.NONE


def test_commands_apply_clip_and_report_their_seq():
    rig = Rig().armed()
    cmd = Command(CommandMode.POSITION, [0.5, 2.0, -0.25], velocity=[9.0, 0, 0])
    rig.send(cmd)
    np.testing.assert_allclose(rig.core.q_goal, [0.5, 1.0, -0.25])
    rig.feed(cmd, 0.6)  # the reference slews there at the velocity limit (2 rad/s): 0.5 s
    np.testing.assert_allclose(rig.core.q_ref, [0.5, 1.0, -0.25])
    np.testing.assert_allclose(rig.core.v_ref, [2.0, 0, 0])  # clipped to the velocity limit
    assert rig.core.counters.commands_clipped == rig.core.counters.commands_applied == 31
    states = [m for _, m in rig.feed(cmd, 0.02) if isinstance(m, State)]
    assert states[-1].last_cmd_seq == rig.seq
    assert StatusBits(states[-1].status) == StatusBits.ARMED


def test_bad_commands_are_rejected_with_a_fault_and_do_not_feed_the_watchdog():
    rig = Rig().armed()
    (f,) = rig.send(Command(CommandMode.POSITION, [0.1, np.nan, 0.0]))
    assert (f.code, f.detail) == (FaultCode.BAD_COMMAND, 0x02000001)  # value, q_target, joint 1
    (f,) = rig.send(Command(CommandMode.POSITION, [0.1, 0.2]))
    assert (f.code, f.detail) == (FaultCode.BAD_COMMAND, 0x01000002)  # joint count 2
    assert rig.core.counters.commands_rejected == 2
    rig.run(0.05)
    assert rig.core.mode is McuMode.FAULTED  # nothing valid since ARM at t=0: tripped


@pytest.mark.parametrize(("period_us", "timeout_s"), [(20000, 0.050), (2000, 0.006),
                                                      (10000, 0.030)])
def test_watchdog_trips_exactly_at_min_of_3_periods_and_50ms(period_us, timeout_s):
    rig = Rig().armed(period_us)
    for _ in range(5):  # commands on time: no trip
        rig.send(Command(CommandMode.POSITION, [0.1] * N))
        rig.run(period_us * 1e-6)
    assert rig.core.mode is McuMode.ARMED
    last = rig.t
    rig.send(Command(CommandMode.POSITION, [0.1] * N))
    rig.run(timeout_s - DT)
    assert rig.core.mode is McuMode.ARMED
    rig.run(DT)
    assert rig.core.mode is not McuMode.ARMED
    trip = next(t for t, e in rig.core.events if "WATCHDOG" in e)
    assert trip - last == pytest.approx(timeout_s)
    assert rig.core.status & StatusBits.WATCHDOG


def test_stop_ramps_at_the_decel_limit_then_faults_and_repeats_the_fault():
    rig = Rig().armed()
    rig.dq = np.array([1.0, -0.5, 0.0])  # moving when the watchdog trips
    got = rig.run(0.05)
    t0 = rig.t
    assert rig.core.mode is McuMode.STOPPING
    assert rig.core.status == StatusBits.STOPPING | StatusBits.WATCHDOG
    got = rig.run(0.05)  # 50 ms into a 100 ms ramp (1 rad/s at 10 rad/s^2)
    tau = rig.t - t0
    np.testing.assert_allclose(rig.core.q_ref, [tau - 5 * tau**2, -0.5 * tau + 5 * tau**2, 0])
    np.testing.assert_allclose(rig.core.v_ref, [1 - 10 * tau, -0.5 + 10 * tau, 0], atol=1e-12)
    assert not faults(got)
    got = rig.run(1.2)
    (t_first, f1), (t2, f2), (t3, f3) = faults(got)
    assert t_first == pytest.approx(t0 + 0.1)
    assert (f1.code, f1.detail) == (FaultCode.WATCHDOG, 0x80000000 | 50000)  # none since ARM
    assert f1.fault_id == f2.fault_id == f3.fault_id  # repeats of one latched fault
    assert t2 - t_first == pytest.approx(0.5) and t3 - t2 == pytest.approx(0.5)
    np.testing.assert_allclose(rig.core.q_ref, [0.05, -0.0125, 0])  # v0 |v0| / 2a
    assert rig.core.status == StatusBits.FAULT | StatusBits.WATCHDOG


def test_estop_latches_ignores_commands_busy_while_stopping_then_rearm_holds_in_place():
    rig = Rig().armed()
    rig.send(Command(CommandMode.POSITION, [0.5] * N))
    rig.dq = np.full(N, 0.2)
    assert rig.send(Estop()) == [Ack(MsgType.ESTOP, rig.seq, AckResult.OK)]
    assert rig.core.status & StatusBits.ESTOP and rig.core.mode is McuMode.STOPPING
    assert rig.arm() == [Ack(MsgType.ARM, rig.seq, AckResult.BUSY)]
    got = rig.run(0.05)
    (_, fault), = faults(got)
    assert fault.code == FaultCode.ESTOP
    rig.send(Command(CommandMode.POSITION, [0.9] * N))
    assert rig.core.counters.commands_ignored == 1
    assert rig.core.status == StatusBits.FAULT | StatusBits.ESTOP
    rig.q = np.full(N, 0.3)  # where the robot came to rest
    assert rig.arm(repeat=True) == [Ack(MsgType.ARM, rig.seq, AckResult.OK)]  # BUSY: retry
    assert rig.core.status == StatusBits.ARMED
    np.testing.assert_allclose(rig.core.q_ref, 0.3)  # holds where it is, not at 0.5 or 0.9
    assert not faults(rig.run(1.0)[:1])


def test_hello_while_armed_stops_to_disarmed_without_a_fault():
    rig = Rig().armed()
    rig.send(Command(CommandMode.POSITION, [0.5] * N))
    rig.send(Hello(20000))
    assert rig.core.mode is McuMode.STOPPING
    got = rig.run(0.01)
    assert rig.core.mode is McuMode.DISARMED and not faults(got)
    assert rig.core.status == StatusBits.NONE


def test_hold_mode_holds_the_measured_position_of_its_first_hold():
    rig = Rig().armed()
    rig.send(Command(CommandMode.POSITION, [0.5] * N))
    rig.q = np.full(N, 0.2)
    rig.send(Command(CommandMode.HOLD, [0.9] * N))
    np.testing.assert_allclose(rig.core.q_ref, 0.2)
    rig.q = np.full(N, 0.25)
    rig.send(Command(CommandMode.HOLD, [0.9] * N))
    np.testing.assert_allclose(rig.core.q_ref, 0.2)
    rig.send(Command(CommandMode.POSITION, [0.4] * N))
    np.testing.assert_allclose(rig.core.q_goal, 0.4)
    rig.feed(Command(CommandMode.POSITION, [0.4] * N), 0.2)
    np.testing.assert_allclose(rig.core.q_ref, 0.4)


def test_heartbeat_is_acked_and_does_not_feed_the_watchdog():
    rig = Rig().armed()
    for _ in range(30):
        assert rig.send(Heartbeat()) == [Ack(MsgType.HEARTBEAT, rig.seq, AckResult.OK)]
        rig.run(0.01)
    assert rig.core.counters.watchdog_trips == 1


def test_recorded_commands_and_sequence_gaps():
    rig = Rig(record_commands=True).armed()
    rig.send(Command(CommandMode.POSITION, [0.1] * N))
    rig.seq += 3  # three host frames lost
    rig.send(Command(CommandMode.POSITION, [0.2] * N))
    assert rig.core.counters.seq_gaps == 3
    assert [round(float(q[0]), 3) for _, _, q in rig.core.command_log] == [0.1, 0.2]


def test_a_repeated_arm_never_clears_a_newer_fault():
    rig = Rig().armed()  # ARM #1 acted on
    rig.run(0.06)  # no commands: the watchdog trips, the stop ends, FAULTED
    assert rig.core.mode is McuMode.FAULTED
    assert rig.arm(repeat=True) == [Ack(MsgType.ARM, rig.seq, AckResult.OK)]  # ACK lost, retried
    assert rig.core.mode is McuMode.FAULTED
    rig.arm()  # the operator's new ARM
    assert rig.core.mode is McuMode.ARMED
    rig.send(Hello(20000))  # a new session forgets ARM ids
    rig.run(0.01)
    rig.arm_id -= 1
    rig.arm()
    assert rig.core.mode is McuMode.ARMED
