import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from karakuri.robot.safety import (
    SafetyConfigError,
    SafetyFilter,
    SafetyLimits,
    SafetyOverrides,
    WorkspaceBox,
    clip_to_limits,
    hold_if_nonfinite,
    in_workspace,
    limit_acceleration,
    limit_velocity,
    soft_start,
)
from karakuri.robot.spec import RobotSpec

N = 3
LOWER = np.array([-1.0, -2.0, 0.0])
UPPER = np.array([1.0, 0.5, 0.1])
VEL = np.array([2.0, 3.0, 0.1])
ACC = np.array([10.0, 20.0, 1.0])
DT = 0.02


def make_spec() -> RobotSpec:
    return RobotSpec(
        name="toy", joint_names=("a", "b", "c"), lower=LOWER, upper=UPPER,
        velocity_limit=VEL, effort_limit=np.ones(N), accel_limit=ACC,
        default_pose=np.array([0.0, -1.0, 0.05]), kp=np.ones(N), kd=np.ones(N),
        arm_joints=("a", "b"), gripper_joints=("c",),
    )


any_floats = st.floats(allow_nan=True, allow_infinity=True, width=64)
finite = st.floats(-10, 10, allow_nan=False, allow_infinity=False)
vec_any = arrays(np.float64, N, elements=any_floats)
vec_finite = arrays(np.float64, N, elements=finite)
inside = st.tuples(*[st.floats(lo, hi) for lo, hi in zip(LOWER, UPPER, strict=True)]).map(np.array)


@given(vec_finite, vec_finite)
def test_hold_if_nonfinite_passes_finite(q, hold):
    out, bad = hold_if_nonfinite(q, hold)
    assert not bad and np.array_equal(out, q)


@given(vec_finite, st.integers(0, N - 1), st.sampled_from([np.nan, np.inf, -np.inf]))
def test_hold_if_nonfinite_holds(hold, j, bad_value):
    q = hold + 1.0
    q[j] = bad_value
    out, bad = hold_if_nonfinite(q, hold)
    assert bad and np.array_equal(out, hold)


@given(vec_finite)
def test_clip_to_limits_inside(q):
    out, hit = clip_to_limits(q, LOWER, UPPER)
    assert np.all(out >= LOWER) and np.all(out <= UPPER)
    assert hit == bool(np.any((q < LOWER) | (q > UPPER)))


@given(vec_finite, vec_finite, st.floats(0, 3), st.floats(0.01, 2))
def test_soft_start_blends(q, q0, t, ramp):
    out, active = soft_start(q, q0, t, ramp)
    alpha = min(t / ramp, 1.0)
    np.testing.assert_allclose(out, q0 + alpha * (q - q0), atol=1e-9)
    assert active == (t < ramp)


def test_soft_start_ends_exactly():
    q0, q = np.zeros(N), np.ones(N)
    assert np.array_equal(soft_start(q, q0, 0.0, 1.0)[0], q0)
    assert np.array_equal(soft_start(q, q0, 1.0, 1.0)[0], q)


@given(vec_finite, vec_finite)
def test_limit_velocity_bounds_step(q, q_prev):
    out, hit = limit_velocity(q, q_prev, VEL * DT)
    assert np.all(np.abs(out - q_prev) <= VEL * DT + 1e-12)
    if not hit:
        np.testing.assert_allclose(out, q)


@given(vec_finite, vec_finite, arrays(np.float64, N, elements=st.floats(-1, 1)))
def test_limit_acceleration_bounds_velocity_change(q, q_prev, v_frac):
    v_prev = v_frac * VEL
    out, _ = limit_acceleration(q, q_prev, v_prev, ACC, DT)
    v = (out - q_prev) / DT
    assert np.all(np.abs(v - v_prev) <= ACC * DT + 1e-9)


def test_limit_acceleration_brakes_without_overshoot():
    q_prev, v = np.zeros(1), np.zeros(1)
    goal = np.array([0.5])
    for _ in range(500):
        q, _ = limit_acceleration(goal, q_prev, v, np.array([10.0]), DT)
        q, _ = limit_velocity(q, q_prev, np.array([2.0 * DT]))
        v, q_prev = (q - q_prev) / DT, q
        assert q[0] <= goal[0] + 0.02
    assert abs(q_prev[0] - goal[0]) < 1e-3


def test_in_workspace_uses_fk():
    fk = lambda q: np.array([q[0], 0.0, 0.5])  # noqa: E731
    lo, hi = np.array([-0.5, -1, 0]), np.array([0.5, 1, 1])
    assert in_workspace(np.array([0.2, 0, 0]), fk, lo, hi)
    assert not in_workspace(np.array([0.7, 0, 0]), fk, lo, hi)
    assert not in_workspace(np.zeros(3), lambda q: np.full(3, np.nan), lo, hi)


def make_filter(soft_start_s: float = 0.0, **kw) -> SafetyFilter:
    return SafetyFilter(SafetyLimits.from_spec(make_spec(), **kw), DT, soft_start_s)


@settings(max_examples=60, deadline=None)
@given(inside, st.lists(vec_any, min_size=1, max_size=30), st.floats(0, 0.5))
def test_filter_invariants(q0, commands, ramp):
    f = make_filter(ramp)
    prev = f.reset(q0)
    for cmd in commands:
        faulted_before = f.latched
        out = f.filter(cmd)
        assert np.all(np.isfinite(out))
        assert np.all(out >= LOWER) and np.all(out <= UPPER)
        assert np.all(np.abs(out - prev) <= VEL * DT + 1e-9)
        if faulted_before or not np.all(np.isfinite(cmd)):
            assert np.array_equal(out, prev) and f.fault is not None
        prev = out


def test_nonfinite_latches_fault_until_reset():
    f = make_filter()
    q0 = np.array([0.1, -1.0, 0.05])
    f.reset(q0)
    f.filter(q0 + 0.01)
    held = f.hold_target()
    out = f.filter(np.array([np.nan, 0, 0]))
    assert np.array_equal(out, held) and "non-finite" in f.fault
    assert np.array_equal(f.filter(q0 + 0.02), held)  # still latched: a good command does not move
    assert f.interventions["nonfinite"] == 1 and f.interventions["latched"] == 1


def test_estop_latch_and_reset_do_not_move():
    f = make_filter(soft_start_s=0.2)
    q0 = np.array([0.0, -1.0, 0.05])
    f.reset(q0)
    for _ in range(5):
        f.filter(np.array([0.5, 0.0, 0.1]))
    f.estop("operator")
    held = f.hold_target()
    for _ in range(3):
        assert np.array_equal(f.filter(np.array([0.9, 0.4, 0.1])), held)
    measured = np.array([0.05, -0.9, 0.06])  # the robot drifted while stopped
    assert np.array_equal(f.reset(measured), measured)
    assert not f.latched
    first = f.filter(np.array([0.9, 0.4, 0.1]))
    # soft start: the first tick after reset stays at the measured pose
    np.testing.assert_allclose(first, measured, atol=1e-12)


def test_interventions_counted_per_kind():
    f = make_filter()
    f.reset(np.zeros(N) + np.array([0, -1, 0.05]))
    f.filter(np.array([5.0, -1.0, 0.05]))
    assert f.interventions["clip"] >= 1 and f.interventions["velocity"] == 1


def test_workspace_hook_holds():
    box = WorkspaceBox((-0.1, -1, -1), (0.1, 1, 1))
    fk = lambda q: np.array([q[0], 0.0, 0.0])  # noqa: E731
    lim = SafetyLimits.from_spec(make_spec(), SafetyOverrides(workspace=box))
    with pytest.raises(SafetyConfigError, match="forward kinematics"):
        SafetyFilter(lim, DT)
    f = SafetyFilter(lim, DT, 0.0, fk=fk)
    f.reset(np.array([0.09, -1, 0.05]))
    held = f.hold_target()
    for _ in range(20):
        out = f.filter(np.array([1.0, -1.0, 0.05]))
        assert out[0] <= 0.1
    assert f.interventions["workspace"] >= 1 and out[0] >= held[0]


def test_overrides_only_tighten():
    spec = make_spec()
    lim = SafetyLimits.from_spec(spec, SafetyOverrides(
        velocity_scale=0.5, velocity_limit={"a": 0.5}, position_limits={"b": (-1.5, 0.0)}))
    assert lim.velocity_limit[0] == 0.5 and lim.velocity_limit[1] == 1.5
    assert lim.lower[1] == -1.5
    with pytest.raises(SafetyConfigError, match=r"safety\.velocity_limit\.a"):
        SafetyLimits.from_spec(spec, SafetyOverrides(velocity_limit={"a": 2.5}))
    with pytest.raises(SafetyConfigError, match=r"safety\.accel_limit\.c"):
        SafetyLimits.from_spec(spec, SafetyOverrides(accel_limit={"c": 2.0}))
    with pytest.raises(SafetyConfigError, match=r"safety\.position_limits\.a"):
        SafetyLimits.from_spec(spec, SafetyOverrides(position_limits={"a": (-1.5, 0.5)}))
    with pytest.raises(SafetyConfigError, match="no joint 'zz'"):
        SafetyLimits.from_spec(spec, SafetyOverrides(velocity_limit={"zz": 0.1}))
    with pytest.raises(SafetyConfigError, match="velocity_scale"):
        SafetyOverrides(velocity_scale=1.2)
