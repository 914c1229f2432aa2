"""One test per rule of docs/wire-protocol.md §6 that a firmware author used to have to guess.

Drives :class:`McuCore` on a hand-made clock through the rig of ``test_fb_mcu_core``.
"""

from __future__ import annotations

import numpy as np
from test_fb_mcu_core import DT, N, Rig, faults

from karakuri.firmware_bridge.mcu_core import McuMode
from karakuri.firmware_bridge.protocol import (
    Ack,
    AckResult,
    Caps,
    Command,
    Estop,
    Fault,
    FaultCode,
    Hello,
    MsgType,
    State,
    describe_fault,
)
from karakuri.robot.link import CommandMode, StatusBits

POS = Command(CommandMode.POSITION, [0.1] * N)


def test_hello_while_armed_stops_through_stopping_and_arm_is_busy_until_disarmed():
    rig = Rig().armed()
    rig.dq = np.full(N, 1.0)  # moving: the ramp takes 100 ms
    rig.send(Hello(20000))
    assert rig.core.mode is McuMode.STOPPING and rig.core.status == StatusBits.STOPPING
    assert rig.arm() == [Ack(MsgType.ARM, rig.seq, AckResult.BUSY)]
    got = rig.run(0.2)
    assert rig.core.mode is McuMode.DISARMED and not faults(got)
    assert rig.arm(repeat=True) == [Ack(MsgType.ARM, rig.seq, AckResult.OK)]  # BUSY: not acted on
    assert rig.core.mode is McuMode.ARMED


def test_a_new_arm_id_while_armed_is_acked_and_changes_nothing():
    rig = Rig().armed()
    rig.feed(POS, 0.1)
    q_ref = rig.core.q_ref.copy()
    rig.run(0.02)  # 40 ms since the last COMMAND (feed waits 20 ms after it)
    assert rig.arm() == [Ack(MsgType.ARM, rig.seq, AckResult.OK)]
    np.testing.assert_array_equal(rig.core.q_ref, q_ref)
    rig.run(0.01 + DT)  # the ARM did not feed the watchdog: it trips at 50 ms
    assert rig.core.mode is not McuMode.ARMED


def test_estop_before_any_hello_stops_and_latches_and_arm_needs_a_hello():
    rig = Rig()
    assert rig.send(Estop()) == [Ack(MsgType.ESTOP, rig.seq, AckResult.OK)]
    got = rig.run(0.02)
    assert rig.core.mode is McuMode.FAULTED
    assert rig.core.status == StatusBits.FAULT | StatusBits.ESTOP
    assert [m.code for _, m in faults(got)] == [FaultCode.ESTOP]
    assert rig.arm() == [Ack(MsgType.ARM, rig.seq, AckResult.NOT_CONFIGURED)]
    rig.send(Hello(20000))
    assert rig.core.mode is McuMode.FAULTED  # HELLO changes nothing else
    rig.arm()
    assert rig.core.status == StatusBits.ARMED


def test_the_first_cause_wins_and_a_later_one_only_latches_its_bit():
    rig = Rig().armed()
    rig.dq = np.full(N, 1.0)
    rig.run(0.05)  # watchdog trip, a 100 ms ramp
    rig.send(Estop())
    got = rig.run(0.2)
    assert [m.code for _, m in faults(got)] == [FaultCode.WATCHDOG]
    assert rig.core.status == StatusBits.FAULT | StatusBits.WATCHDOG | StatusBits.ESTOP


def test_a_causeless_stop_takes_the_cause_of_a_later_estop_or_limit():
    rig = Rig().armed()
    rig.dq = np.full(N, 1.0)
    rig.send(Hello(20000))
    rig.send(Estop())
    got = rig.run(0.2)
    assert [m.code for _, m in faults(got)] == [FaultCode.ESTOP]
    assert rig.core.mode is McuMode.FAULTED
    rig = Rig().armed()
    rig.dq = np.full(N, 1.0)
    rig.send(Hello(20000))
    rig.q = np.array([0.0, 1.2, 0.0])  # joint 1 measured past its limit (1) + margin (0.05)
    got = rig.run(0.2)
    assert [(m.code, m.detail) for _, m in faults(got)] == [(FaultCode.POSITION_LIMIT, 1)]


def test_bad_command_is_answered_in_every_state_with_a_structured_detail():
    rig = Rig()  # DISARMED, not even configured
    (f,) = rig.send(Command(CommandMode.POSITION, [0.0] * N, velocity=[0.0, 0.0, np.inf]))
    assert (f.code, f.detail) == (FaultCode.BAD_COMMAND, 0x02010002)  # velocity, joint 2
    (f2,) = rig.send(Command(CommandMode.HOLD, [0.0] * N, effort=[np.nan, 0.0, 0.0]))
    assert f2.detail == 0x02020000 and f2.fault_id == f.fault_id + 1  # effort, joint 0
    (f3,) = rig.send(Command(CommandMode.POSITION, [0.0] * 5))
    assert f3.detail == 0x01000005
    assert rig.core.mode is McuMode.DISARMED and rig.core.counters.commands_rejected == 3


def test_last_cmd_seq_is_zero_until_a_command_after_each_arm():
    rig = Rig().armed()
    states = [m for _, m in rig.run(0.02) if isinstance(m, State)]
    assert states[-1].last_cmd_seq == 0
    rig.send(POS)
    seq = rig.seq
    assert [m for _, m in rig.run(0.02) if isinstance(m, State)][-1].last_cmd_seq == seq
    rig.send(Estop())
    rig.run(0.05)
    rig.arm()
    assert [m for _, m in rig.run(0.02) if isinstance(m, State)][-1].last_cmd_seq == 0


def test_commands_across_the_seq_wrap_are_newer_and_duplicates_are_stale():
    rig = Rig().armed()
    rig.seq = 65534
    rig.send(POS)  # seq 65535
    assert rig.core.last_cmd_seq == 65535
    rig.seq = 0
    rig.send(POS)  # seq 1: the next after 65535
    assert rig.core.last_cmd_seq == 1 and rig.core.counters.commands_stale == 0
    rig.seq = 0
    rig.send(POS)  # seq 1 again: a duplicate
    rig.seq = 65530
    rig.send(POS)  # older
    assert rig.core.counters.commands_stale == 2 and rig.core.last_cmd_seq == 1


def test_a_stale_command_does_not_feed_the_watchdog():
    rig = Rig().armed()
    rig.send(POS)
    first = rig.seq
    for _ in range(4):
        rig.run(0.02)
        rig.seq = first - 1
        rig.send(POS)  # the same seq, over and over
    assert rig.core.mode is not McuMode.ARMED  # tripped 50 ms after the one applied COMMAND
    c = rig.core.counters
    assert c.commands_applied == 1 and c.commands_stale == 2 and c.commands_ignored == 2


def test_arm_is_rejected_while_a_joint_is_out_and_accepted_once_it_is_back():
    rig = Rig()
    rig.q = np.array([0.0, 0.0, -1.1])  # joint 2 past its lower limit (-1) by more than 0.05
    got = rig.run(0.01)
    assert rig.core.mode is McuMode.FAULTED
    assert [(m.code, m.detail) for _, m in faults(got)] == [(FaultCode.POSITION_LIMIT, 2)]
    assert rig.core.status == StatusBits.FAULT  # no cause bit: the cause is in the FAULT
    rig.send(Hello(20000))
    assert rig.arm() == [Ack(MsgType.ARM, rig.seq, AckResult.REJECTED)]
    rig.q = np.array([0.0, 0.0, -1.04])  # within the margin
    assert rig.arm(repeat=True) == [Ack(MsgType.ARM, rig.seq, AckResult.OK)]
    assert rig.core.mode is McuMode.ARMED


def test_a_joint_measured_out_while_armed_stops_without_moving_it_further():
    rig = Rig().armed()
    rig.q, rig.dq = np.array([1.06, 0.0, 0.0]), np.array([2.0, 0.0, 0.0])  # past, moving out
    got = rig.run(0.1)
    assert [(m.code, m.detail) for _, m in faults(got)] == [(FaultCode.POSITION_LIMIT, 0)]
    assert rig.core.q_ref[0] == 1.06  # held where it was measured, not pushed further out


def test_host_bound_messages_sent_to_the_mcu_are_dropped_unanswered():
    rig = Rig().armed()
    z = np.zeros(N)
    for msg in (State(1, 0, z, z, z), Fault(1, 1, 0), Ack(MsgType.ARM, 1, 0),
                Caps(1, 2000, 20000, 20000, 50000, z, z + 1, z + 1, z + 1)):
        assert rig.send(msg) == []
    assert rig.core.counters.other_errors == 4
    assert rig.core.mode is McuMode.ARMED


def test_state_period_is_never_slower_than_the_command_period():
    rig = Rig()  # default 20 ms
    (caps,) = rig.send(Hello(10000, 0))
    assert caps.state_period_us == 10000
    (caps,) = rig.send(Hello(10000, 500000))
    assert caps.state_period_us == 10000
    (caps,) = rig.send(Hello(5_000_000, 5_000_000))
    assert caps.command_period_us == caps.state_period_us == 1_000_000


def test_watchdog_detail_flags_whether_a_command_followed_the_arm():
    rig = Rig().armed()
    got = rig.run(0.06)
    (_, f), = faults(got)
    assert f.detail == 0x80000000 | 50000
    rig.arm()
    rig.send(POS)
    (_, f), = faults(rig.run(0.06))
    assert f.detail == 50000


def test_hold_ignores_its_feed_forward_arrays():
    rig = Rig().armed()
    rig.send(Command(CommandMode.POSITION, [0.5] * N, velocity=[1.0] * N, effort=[5.0] * N))
    rig.send(Command(CommandMode.HOLD, [0.5] * N, velocity=[2.0] * N, effort=[10.0] * N))
    assert not rig.core.v_ref.any() and not rig.core.tau_ff.any()
    np.testing.assert_array_equal(rig.core.q_ref, rig.q)


def test_hello_while_faulted_keeps_the_fault_and_its_repeats():
    rig = Rig().armed()
    got = rig.run(0.06)
    (_, f), = faults(got)
    rig.send(Hello(20000))
    assert rig.core.mode is McuMode.FAULTED
    (_, again), = faults(rig.run(0.5))
    assert again == f


def test_fault_details_read_as_the_spec_says():
    assert "50.0 ms since the ARM, no COMMAND" in describe_fault(1, 0x80000000 | 50000)
    assert "50.0 ms since the last COMMAND" in describe_fault(1, 50000)
    assert describe_fault(3, 0x01000005) == "COMMAND rejected: it carried 5 joints"
    assert describe_fault(3, 0x02010002) == "COMMAND rejected: non-finite velocity of joint 2"
    assert describe_fault(4, 3).startswith("joint 3 measured outside its limits")
    assert describe_fault(9, 1) == "code 9, detail 0x00000001"
