"""Findings 3 and 4 at the ControlLoop seam: the host stops on anything it cannot vouch for.

Each stop has a stable kind and exit code (``loop_stats.EXIT_CODES``) and a message naming the
cause; the final HOLD never carries a NaN.
"""


import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_control_loop import FakeLink, FakePolicy, make_loop

from karakuri.robot.link import CommandMode, JointState, StatusBits
from karakuri.robot.loop_stats import EXIT_CODES, MAX_LINK_FAULTS
from karakuri.robot.state_check import StateBounds, StateMonitor


def at_send(link, n_at, fn):
    link.on_send = lambda n: fn() if n == n_at else None


def test_robot_leaving_armed_mid_run_stops_with_exit_3():
    """A foreign HELLO disarms the MCU: the host must not carry on."""
    link, policy = FakeLink(), FakePolicy()
    at_send(link, 20, lambda: setattr(link, "status", StatusBits.NONE))
    s = make_loop(link, policy, duration=2.0).run()
    assert s.fault.startswith("robot left ARMED") and s.fault_kind == "robot"
    assert s.exit_code == EXIT_CODES["robot"] == 3 and s.ticks == 21  # the tick after send 20
    assert link.sent[-1][1] == CommandMode.HOLD


def test_fault_bit_while_armed_stops_with_exit_3():
    link, policy = FakeLink(), FakePolicy()
    at_send(link, 10, lambda: setattr(link, "status", StatusBits.ARMED | StatusBits.FAULT))
    s = make_loop(link, policy, duration=2.0).run()
    assert s.fault.startswith("robot FAULT") and s.exit_code == 3


def test_operator_estop_is_not_a_lost_arm():
    link, policy = FakeLink(), FakePolicy()
    loop = make_loop(link, policy, duration=0.3)

    def ops(n):
        if n == 10:
            loop.estop("operator")
        if n == 12:
            link.status = StatusBits.ESTOP  # what the MCU reports after ESTOP

    link.on_send = ops
    s = loop.run()
    assert s.fault is None and s.exit_code == 0


class StuckLink(FakeLink):
    """The plant stops tracking and reports ``bad`` on one joint from send ``n_at`` on."""

    def __init__(self, n_at, joint, bad):
        super().__init__()
        self.n_at, self.joint, self.bad = n_at, joint, bad

    def send_command(self, q_target, mode=CommandMode.POSITION):
        super().send_command(q_target, mode)
        if len(self.sent) >= self.n_at:
            self.q[self.joint] = self.bad


def test_state_outside_limits_stops_with_exit_4():
    """Finding 4: an elbow reading stuck at 50 rad (limit 1) is refused at once."""
    link = StuckLink(10, 1, 50.0)
    s = make_loop(link, FakePolicy(), duration=2.0).run()
    assert s.fault.startswith("bad STATE: joint 'joint 1' at 50 is outside its limits")
    assert s.exit_code == EXIT_CODES["state"] == 4 and s.ticks == 11  # the tick after send 10
    q_hold, mode = link.sent[-1]
    assert mode == CommandMode.HOLD and np.all(np.abs(q_hold) <= 1.0)


def test_nan_state_is_named_as_state_and_the_final_hold_is_the_last_good_pose():
    link = StuckLink(10, 0, np.nan)
    s = make_loop(link, FakePolicy(), duration=2.0).run()
    assert s.fault.startswith("bad STATE: position of joint 'joint 0' is nan")
    assert "non-finite command" not in s.fault and s.exit_code == 4
    q_hold, mode = link.sent[-1]
    assert mode == CommandMode.HOLD and np.all(np.isfinite(q_hold))
    np.testing.assert_allclose(q_hold, link.sent[8][0], atol=0.02)  # where it last was, good


def test_non_physical_jump_stops():
    link = StuckLink(10, 0, 0.9)  # from near 0.3 to 0.9 within one 5 ms tick
    s = make_loop(link, FakePolicy(target=(0.3, -0.2)), duration=2.0).run()
    assert "jumped" in s.fault and s.exit_code == 4


def test_bad_first_state_refuses_to_start():
    from karakuri.robot.control_loop import LoopError

    link = FakeLink(q0=(np.nan, 0.0))
    with pytest.raises(LoopError, match=r"bad STATE: position of joint 'joint 0' is nan \(seq 0\); "
                                        "refusing to start"):
        make_loop(link, FakePolicy()).run()


def test_stale_stop_has_its_own_exit_code():
    link, policy = FakeLink(), FakePolicy()
    at_send(link, 10, lambda: setattr(link, "frozen_at", link.clock.now()))
    s = make_loop(link, policy, duration=2.0, stale_fault_s=0.1).run()
    assert s.fault.startswith("stale STATE") and s.exit_code == EXIT_CODES["stale"] == 5


def test_summary_reports_command_gap_watchdog_margin_and_faults_once():
    link, policy = FakeLink(), FakePolicy()
    link.watchdog_s = 0.05
    link.faults = lambda: [f"link fault {k}" for k in range(25)]
    s = make_loop(link, policy, duration=0.3).run()
    assert s.max_command_gap_s == pytest.approx(1 / 200)  # one period on the fake clock
    assert s.watchdog_margin_s == pytest.approx(0.05 - s.max_command_gap_s)
    text = s.format()
    assert "largest gap" in text and "watchdog 50.0 ms, margin" in text
    assert len(s.link_faults) == MAX_LINK_FAULTS and s.link_faults_total == 25
    assert text.count("link fault 0") == 1 and "... and 15 more" in text
    assert '"exit_code": 0' in s.to_json()


# ----------------------------------------------------------------------------- StateMonitor
BOUNDS = StateBounds.from_limits(("a", "b"), np.array([-1.0, -1.0]), np.array([1.0, 1.0]),
                                 np.array([2.0, 2.0]))


def js(q, dq=(0.0, 0.0), t=0.0, dev_us=0):
    return JointState(np.array(q, float), np.array(dq, float), np.zeros(2), t,
                      device_time_us=dev_us)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(-1.0, 1.0), st.floats(0.001, 0.05)), min_size=2,
                max_size=20))
def test_physical_motion_is_never_refused(steps):
    """Any path moving at most the speed limit, inside the limits, passes."""
    mon, t, q = StateMonitor(BOUNDS), 0.0, 0.0
    for target, dt in steps:
        t += dt
        q = q + float(np.clip(target - q, -2.0 * dt, 2.0 * dt))
        assert mon.check(js([q, 0.0], t=t, dev_us=int(t * 1e6) + 1)) is None


def test_jump_is_judged_on_the_robot_clock():
    mon = StateMonitor(BOUNDS)
    assert mon.check(js([0.0, 0.0], t=0.0, dev_us=1_000_000)) is None
    # arrived 1 s later on the host (a stalled link), but sampled 5 ms later on the MCU
    assert "jumped" in mon.check(js([0.5, 0.0], t=1.0, dev_us=1_005_000))
    assert mon.last_good.position[0] == 0.0


def test_reported_speed_beyond_physics_is_refused():
    mon = StateMonitor(BOUNDS)
    assert "reports 14/s, more than 5 x its limit 2/s" in mon.check(js([0.0, 0.0], dq=(0, 14)))
    assert mon.check(js([0.0, 0.0], dq=(0.0, 4.4))) is None  # a contact spike, not motion
