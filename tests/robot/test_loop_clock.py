"""The loop's clock seam: exact deadlines, lateness and missed ticks on a fake clock; the
wall clock default keeps its deadlines.

The fakes and ``RATE`` (256 Hz, a period binary floating point holds exactly) come from
``test_control_loop``.
"""

import numpy as np
import pytest
from test_control_loop import (
    RATE,
    RT_OFF,
    T0,
    FakeLink,
    FakePolicy,
    make_spec,
    run_loop,
)

from karakuri.robot.control_loop import ControlLoop, LoopConfig
from karakuri.robot.loop_clock import Clock, WallClock
from karakuri.robot.loop_commands import FixedTargets
from karakuri.robot.safety import SafetyFilter, SafetyLimits


@pytest.mark.parametrize(("work_periods", "late", "missed"), [
    (0.9, 0, 0),  # a slow tick within its period: the next one is on time
    (1.5, 1, 0),  # overran into the next period: that tick is late, none is skipped
    (3.5, 1, 2),  # overran two whole periods: those deadlines are missed, never run late
])
def test_overrun_counts_late_and_missed_and_the_schedule_never_drifts(work_periods, late,
                                                                        missed):
    link, policy = FakeLink(), FakePolicy()
    policy.hook = lambda n: link.clock.advance(work_periods / RATE) if n == 10 else None
    s = run_loop(link, policy, duration=20 / RATE)
    assert (s.late, s.missed, s.ticks) == (late, missed, 20 - missed)
    k_end = 9 + work_periods  # tick 9 (the 10th) sends and ends here, periods after t0
    starts = [*range(10),
              *([k_end] if k_end > 10 else []),  # the overdue deadline runs at once
              *(k for k in range(10, 20) if k >= k_end)]  # later ones on their deadlines
    sends = [*starts[:9], k_end, *starts[10:]]
    np.testing.assert_allclose(link.sent_at[:-1], T0 + np.array(sends) / RATE, rtol=0,
                               atol=1e-12)
    assert s.compute.max_us == pytest.approx(work_periods / RATE * 1e6, rel=0.02)
    assert s.period_error.max_us == pytest.approx(max(0.0, k_end - 10) / RATE * 1e6,
                                                  rel=0.02, abs=1e-9)


def test_a_tick_exactly_late_s_after_its_deadline_is_not_late():
    link, policy = FakeLink(), FakePolicy()
    late_s = 0.25 / RATE  # tick 3 overruns into tick 4 by exactly late_s, tick 6 by twice it
    policy.hook = (lambda n: link.clock.advance(1 / RATE + late_s) if n == 3 else
                   link.clock.advance(1 / RATE + 2 * late_s) if n == 6 else None)
    s = run_loop(link, policy, duration=10 / RATE, late_s=late_s)
    assert (s.late, s.missed, s.ticks) == (1, 0, 10)


def test_wall_clock_default_keeps_its_deadlines():
    """The default clock: real time, so only what always holds (no tick before its deadline)."""
    link, spec = FakeLink(clock=WallClock()), make_spec()  # type: ignore[arg-type]
    loop = ControlLoop(link, FakePolicy(), SafetyFilter(SafetyLimits.from_spec(spec), 1 / RATE),
                       LoopConfig(RATE, 8 / RATE), realtime=RT_OFF, log=lambda s: None,
                       commands=FixedTargets(((0.1, 0.2, 0.3),), hold_s=10.0, reset_s=0.0))
    s = loop.run()
    assert isinstance(loop.clock, WallClock) and loop.clock.spin_s == loop.config.spin_s
    assert 1 <= s.ticks <= 8 and s.stopped_by.startswith("duration")
    sends = np.array(link.sent_at[: s.ticks])  # tick k sends after its deadline t0 + k/rate
    assert np.all(sends - loop._t0 >= np.arange(s.ticks) / RATE)


def test_wall_clock_waits_until_the_deadline():
    clock = WallClock(spin_s=0.001)
    t = clock.now() + 0.003
    clock.sleep_until(t)
    assert clock.now() >= t
    past = clock.now() - 1.0
    clock.sleep_until(past)  # returns at once
    assert isinstance(clock, Clock)
    with pytest.raises(ValueError, match="spin_s"):
        WallClock(spin_s=-0.001)
