"""HostCore byte by byte: state age from the MCU's clock, FAULT beats STATE bits, bounded faults."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from karakuri.firmware_bridge.clock_sync import WRAP_US, ClockSync
from karakuri.firmware_bridge.host_core import KEEP_FAULTS, HostCore
from karakuri.firmware_bridge.protocol import (
    Ack,
    AckResult,
    Caps,
    Command,
    Fault,
    FaultCode,
    MsgType,
    State,
    encode_frame,
)
from karakuri.robot.link import StatusBits
from karakuri.robot.spec import RobotSpec

N = 2
SPEC = RobotSpec(name="toy", joint_names=("a", "b"), lower=-np.ones(N), upper=np.ones(N),
                 velocity_limit=np.full(N, 2.0), effort_limit=np.ones(N),
                 accel_limit=np.full(N, 50.0), default_pose=np.zeros(N), kp=np.ones(N),
                 kd=np.ones(N), arm_joints=("a", "b"))
ARMED = int(StatusBits.ARMED)


class Host:
    """A HostCore whose sends are numbered and kept; time is passed in by the test."""

    def __init__(self, period_s: float = 0.02) -> None:
        self.sent: list[tuple[int, object]] = []
        self.core = HostCore(SPEC, "/dev/test", period_s, None, 0.0, None, self._send)
        self.core.start_handshake(0.0)
        caps = Caps(SPEC.joint_hash(), 2000, round(period_s * 1e6), 20000, 50000,
                    SPEC.lower, SPEC.upper, SPEC.velocity_limit, SPEC.effort_limit)
        self.rx(caps, 0.0, mcu_us=0)

    def _send(self, msg: object) -> int:
        self.sent.append((len(self.sent) + 1, msg))
        return len(self.sent)

    def rx(self, msg: object, now: float, mcu_us: int, seq: int = 1) -> None:
        self.core.feed(encode_frame(msg, seq, mcu_us), now)

    def command(self, now: float) -> int:
        self.core.send_command(Command(1, np.zeros(N, np.float32)), now)
        return self.sent[-1][0]


def state(last_cmd: int = 0, status: int = ARMED, q: float = 0.0) -> State:
    return State(status, last_cmd, np.full(N, q), np.zeros(N), np.zeros(N))


def test_one_way_latency_shows_as_age_not_arrival():
    """Finding 4: 150 ms each way must make states 150 ms old, though they arrive 'now'."""
    host, lat, offset = Host(), 0.150, 1000.0  # host clock = MCU clock + 1000 s
    for k in range(20):
        t_tx = 1.0 + 0.02 * k
        seq = host.command(t_tx)
        mcu_t = t_tx + lat - offset + 0.001  # the MCU applies it on arrival, samples 1 ms later
        t_rx = mcu_t + offset + lat
        host.rx(state(seq), t_rx, round(mcu_t * 1e6) % WRAP_US, seq=k + 2)
        age = t_rx - host.core.state.stamp
    assert age == pytest.approx(lat, abs=0.002)


def test_no_latency_means_fresh_states():
    host, offset = Host(), -5.0
    for k in range(10):
        t_tx = 2.0 + 0.02 * k
        seq = host.command(t_tx)
        host.rx(state(seq), t_tx + 0.002, round((t_tx + 0.001 - offset) * 1e6), seq=k + 2)
    assert 0 <= host.core.state.stamp <= t_tx + 0.002
    assert t_tx + 0.002 - host.core.state.stamp < 0.0015


def test_before_any_round_trip_the_arrival_is_the_stamp():
    host = Host()
    host.rx(state(), 3.0, 123_000)
    assert host.core.state.stamp == 3.0


@settings(max_examples=50, deadline=None)
@given(st.floats(-1e4, 1e4), st.floats(0.0, 0.3), st.floats(0.0, 0.3),
       st.integers(0, WRAP_US - 1))
def test_clock_sync_bounds_hold_for_any_offset_latency_and_wrap(offset, up, down, start_us):
    """The estimated sample time lies within [send, arrival] of each round trip."""
    sync, t = ClockSync(), 10.0
    mcu0 = start_us * 1e-6
    for k in range(30):
        t_tx = t + 0.02 * k
        mcu_true = t_tx + up - offset  # sampled on arrival of the COMMAND
        mcu_s = sync.mcu_seconds(round((mcu0 + mcu_true) * 1e6) % WRAP_US) - mcu0
        t_rx = mcu_true + offset + down
        sync.add(mcu_s + mcu0, t_rx, t_tx)
        est = sync.host_time(mcu_s + mcu0, t_rx)
        assert t_tx - 1e-3 <= est <= t_rx + 1e-9
    assert abs(est - (mcu_true + offset)) <= 0.5 * (up + down) + 1e-3


def test_clock_step_restarts_the_estimate():
    sync = ClockSync()
    for k in range(5):
        sync.add(float(k), 100.0 + k + 0.01, 100.0 + k - 0.01)
    sync.add(5.0, 106.0 + 0.01, 106.0 - 0.01)  # the MCU's clock fell 1 s behind
    assert sync.resets == 1
    assert sync.host_time(5.0, 106.01) == pytest.approx(106.0, abs=0.011)


def test_fault_message_beats_armed_state_bits_until_rearmed():
    """Finding 3: a FAULT while STATE still says ARMED must reach the loop as a FAULT."""
    host = Host()
    host.rx(state(), 0.1, 100_000, seq=2)
    assert host.core.state.status == StatusBits.ARMED
    host.rx(Fault(FaultCode.BAD_COMMAND, 7, 3), 0.11, 110_000, seq=3)
    host.rx(state(), 0.12, 120_000, seq=4)
    assert host.core.state.status & StatusBits.FAULT and host.core.state.status & StatusBits.ARMED
    arm = host.core.next_arm()
    host.core.request(arm, 1.0, 0.13)
    arm_seq = host.sent[-1][0]
    host.rx(Ack(MsgType.ARM, arm_seq, AckResult.OK), 0.14, 140_000, seq=5)
    host.rx(state(), 0.15, 150_000, seq=6)
    assert host.core.state.status == StatusBits.ARMED
    host.rx(Fault(FaultCode.BAD_COMMAND, 7, 3), 0.16, 160_000, seq=7)  # a repeat of #7
    host.rx(state(), 0.17, 170_000, seq=8)
    assert host.core.state.status == StatusBits.ARMED
    host.rx(Fault(FaultCode.WATCHDOG, 8, 60_000), 0.18, 180_000, seq=9)
    host.rx(state(), 0.19, 190_000, seq=10)
    assert host.core.state.status & StatusBits.WATCHDOG


def test_fault_list_is_bounded():
    host = Host()
    for k in range(10 * KEEP_FAULTS):
        host.core.add_fault(f"fault {k}")
    faults = host.core.faults()
    assert len(faults) == 2 * KEEP_FAULTS
    assert faults[0] == "fault 0" and faults[-1] == f"fault {10 * KEEP_FAULTS - 1}"
    assert host.core.snapshot().extra["faults_dropped"] == 8 * KEEP_FAULTS


def test_caps_with_another_command_period_is_refused():
    host = HostCore(SPEC, "/dev/test", 0.001, None, 0.0, None, lambda m: 1)
    host.start_handshake(0.0)
    caps = Caps(SPEC.joint_hash(), 2000, 2000, 20000, 6000, SPEC.lower, SPEC.upper,
                SPEC.velocity_limit, SPEC.effort_limit)
    host.feed(encode_frame(caps, 1, 0), 0.0)
    assert "accepted a COMMAND period of 2000 µs, not the 1000 µs" in host.handshake_error


def test_a_resend_never_overtakes_a_newer_command():
    """The reader thread's resend of COMMAND k must not go out after COMMAND k+1 (the final
    HOLD was being overridden by a late resend of the last POSITION target)."""
    import threading

    order: list[str] = []
    newer = Command(0, np.ones(N, np.float32))
    threads: list[threading.Thread] = []
    core: HostCore

    def send(msg):
        if isinstance(msg, Command) and not order and msg.mode == 1:
            other = threading.Thread(target=core.send_command, args=(newer, 1.012))
            threads.append(other)
            other.start()  # the loop thread sends the HOLD while the resend is being written
            other.join(0.1)
            order.append("resend")
            return 10
        if isinstance(msg, Command):
            order.append("hold" if msg.mode == 0 else "position")
        return 11

    core = HostCore(SPEC, "/dev/test", 0.02, None, 0.005, None, lambda m: 1)
    core.link_up = True
    core.send_command(Command(1, np.zeros(N, np.float32)), 1.0)
    core.send = send
    core.housekeeping(1.010)  # a resend is due
    threads[0].join(2.0)
    assert order == ["resend", "hold"]
