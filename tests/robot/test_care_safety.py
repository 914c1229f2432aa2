"""Care safety stages: separation formula, step scaling, force estimate and protective stops."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from karakuri.robot.care_safety import CareConfig, CareSafety
from karakuri.robot.force_limit import (
    BODY_REGIONS,
    ForceConfigError,
    ForceLimitConfig,
    ForceLimiter,
    tool_wrench,
)
from karakuri.robot.registry import load_robot
from karakuri.robot.safety import SafetyFilter, SafetyLimits
from karakuri.robot.ssm import (
    SeparationConfigError,
    SeparationParams,
    allowed_speed,
    bound_lead,
    protective_separation,
    scale_step,
)

DT = 0.02
SPEC = load_robot("care_arm")
CHAIN = SPEC.kinematics
PARAMS = SeparationParams(human_speed=0.1, perception_latency_s=0.0, stopping_time_s=0.1,
                          person_uncertainty_m=0.02, robot_uncertainty_m=0.005)
sep = st.floats(0.0, 2.0, allow_nan=False)


@given(sep)
def test_allowed_speed_keeps_the_protective_separation(s: float) -> None:
    v = allowed_speed(s, PARAMS, DT)
    assert v >= 0.0
    if s <= PARAMS.min_separation(DT):
        assert v == 0.0
    else:
        assert protective_separation(v, PARAMS, DT) <= s + 1e-12
    if s <= PARAMS.reduced_zone_m:
        assert v <= PARAMS.reduced_speed + 1e-12


@given(sep, sep)
def test_allowed_speed_grows_with_separation(a: float, b: float) -> None:
    lo, hi = sorted((a, b))
    assert allowed_speed(lo, PARAMS, DT) <= allowed_speed(hi, PARAMS, DT)


def test_bad_separation_parameters_are_named() -> None:
    with pytest.raises(SeparationConfigError, match="separation.reduced_speed: 0.5"):
        SeparationParams(reduced_speed=0.5)
    with pytest.raises(SeparationConfigError, match="separation.human_speed"):
        SeparationParams(human_speed=-1.0)


joint_vec = st.lists(st.floats(-1.0, 1.0), min_size=7, max_size=7).map(np.array)


@settings(max_examples=60, deadline=None)
@given(joint_vec, joint_vec, st.floats(0.0, 0.05))
def test_scale_step_keeps_the_direction_and_bounds_the_travel(a, b, travel) -> None:
    q_prev = np.clip(SPEC.default_pose + 0.5 * a, SPEC.lower, SPEC.upper)
    q = np.clip(q_prev + 0.2 * b, SPEC.lower, SPEC.upper)
    out, s = scale_step(q, q_prev, CHAIN, travel)
    assert 0.0 <= s <= 1.0
    np.testing.assert_allclose(out, q_prev + s * (q - q_prev), atol=1e-12)
    assert np.linalg.norm(CHAIN(out) - CHAIN(q_prev)) <= travel + 1e-12


@settings(max_examples=60, deadline=None)
@given(joint_vec, joint_vec, joint_vec, st.floats(0.0, 0.1))
def test_bound_lead_keeps_the_direction_and_never_grows_the_lead_past_the_bound(
        a, b, m, max_lead) -> None:
    q_prev = np.clip(SPEC.default_pose + 0.5 * a, SPEC.lower, SPEC.upper)
    q = np.clip(q_prev + 0.2 * b, SPEC.lower, SPEC.upper)
    p_meas = CHAIN(np.clip(q_prev + 0.1 * m, SPEC.lower, SPEC.upper))
    out, s = bound_lead(q, q_prev, CHAIN, p_meas, max_lead)
    assert 0.0 <= s <= 1.0
    np.testing.assert_allclose(out, q_prev + s * (q - q_prev), atol=1e-12)
    before = np.linalg.norm(CHAIN(q_prev) - p_meas)
    assert np.linalg.norm(CHAIN(out) - p_meas) <= max(max_lead, before) + 1e-12
    if np.linalg.norm(CHAIN(q) - p_meas) <= max(max_lead, before):
        assert s == 1.0  # nothing to bound: the step is left alone


@dataclass
class FakeState:
    position: np.ndarray
    velocity: np.ndarray
    effort: np.ndarray
    stamp: float


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def care_filter(person: np.ndarray | None, state=None, force: ForceLimitConfig | None = None,
                clock: Clock | None = None) -> tuple[SafetyFilter, CareSafety, Clock]:
    clock = clock or Clock()
    limits = SafetyLimits.from_spec(SPEC)
    f = SafetyFilter(limits, DT, soft_start_s=0.0)
    source = None if person is None else type("P", (), {"read": lambda self: (person, clock.t)})()
    care = CareSafety(CHAIN, DT, CareConfig(PARAMS, force), limits.lower, limits.upper,
                      person=source, state=state, clock=clock)
    f.add_stage(care)
    f.reset(SPEC.default_pose)
    return f, care, clock


def test_no_person_position_holds_the_robot() -> None:
    f, _, _ = care_filter(None)
    out = f.filter(SPEC.default_pose + 0.3)
    np.testing.assert_array_equal(out, SPEC.default_pose)
    assert f.interventions["person_stale"] == 1 and f.interventions["ssm_hold"] == 1


@settings(max_examples=25, deadline=None)
@given(st.lists(joint_vec, min_size=5, max_size=30),
       st.lists(st.floats(-0.4, 0.4), min_size=3, max_size=3))
def test_tool_speed_stays_within_the_separation_limit(cmds, offset) -> None:
    person = CHAIN(SPEC.default_pose) + np.array(offset)
    f, care, clock = care_filter(person)
    q_prev = f.hold_target()
    for c in cmds:
        out = f.filter(SPEC.default_pose + 2.0 * c)
        clock.t += DT
        speed = np.linalg.norm(CHAIN(out) - CHAIN(q_prev)) / DT
        assert speed <= care.allowed_mps + 1e-9
        if care.separation_m <= PARAMS.min_separation(DT):
            np.testing.assert_array_equal(out, q_prev)
        q_prev = out


def test_far_person_leaves_the_command_alone() -> None:
    f, _, clock = care_filter(np.array([5.0, 5.0, 5.0]))
    plain = SafetyFilter(SafetyLimits.from_spec(SPEC), DT, soft_start_s=0.0)
    plain.reset(SPEC.default_pose)
    for _ in range(20):
        q = SPEC.default_pose + 0.3
        np.testing.assert_array_equal(f.filter(q), plain.filter(q))
        clock.t += DT
    assert f.interventions["ssm_scale"] == f.interventions["ssm_hold"] == 0


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0.0, 3.0), min_size=4, max_size=20), joint_vec)
def test_tool_speed_holds_over_late_and_early_ticks(gaps: list[float], c) -> None:
    """Ticks at irregular times (a late tick, then the next on its deadline): the tool never
    travels more than the allowed speed times the time since the previous tick, whose budget
    is at most one period (the first tick: one period)."""
    person = CHAIN(SPEC.default_pose) + np.array([0.2, 0.0, 0.0])
    f, care, clock = care_filter(person)
    q_prev = f.hold_target()
    for k, gap in enumerate(gaps):
        clock.t += gap * DT
        out = f.filter(SPEC.default_pose + 2.0 * c)
        travel = float(np.linalg.norm(CHAIN(out) - CHAIN(q_prev)))
        assert travel <= care.allowed_mps * (min(gap, 1.0) if k else 1.0) * DT + 1e-9
        q_prev = out


def test_tool_wrench_recovers_a_force_at_the_tool() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        q = rng.uniform(SPEC.lower * 0.8, SPEC.upper * 0.8)
        jac = CHAIN.jacobian(q)[:, :6]
        force = rng.normal(size=3) * 50
        tau = jac[:3].T @ force
        if np.linalg.cond(jac) > 200:
            continue
        np.testing.assert_allclose(tool_wrench(jac, tau)[:3], force, rtol=1e-3, atol=0.05)


def test_force_over_the_limit_stops_holding_the_measured_pose_then_faults() -> None:
    q0 = SPEC.default_pose.copy()
    pushed = q0.copy()
    pushed[:6] += 0.01
    box = {"s": FakeState(q0, np.zeros(7), np.zeros(7), 0.0)}
    cfg = ForceLimitConfig(region="hand", max_stops=2, resume_s=0.1)
    f, care, clock = care_filter(np.array([5.0, 5.0, 5.0]), state=lambda: box["s"], force=cfg,
                                 clock=None)
    jac = CHAIN.jacobian(pushed)[:, :6]
    push = np.zeros(7)
    push[:6] = -(jac[:3].T @ np.array([0.0, 0.0, 200.0]))  # the servo resists 200 N upward
    box["s"] = FakeState(pushed, np.zeros(7), push, 0.02)
    out = f.filter(q0 + 0.05)
    assert care.stopped and care.force_n == pytest.approx(200.0, rel=0.02)
    np.testing.assert_allclose(out[:6], pushed[:6])  # the arm holds where it was pushed to
    assert out[6] == q0[6]  # the gripper keeps its target
    assert f.interventions["force_stop"] == 1 and not f.latched
    for k in range(10):  # the contact is gone: resume after resume_s
        box["s"] = FakeState(pushed, np.zeros(7), np.zeros(7), 0.04 + 0.02 * k)
        f.filter(q0)
    assert not care.stopped
    box["s"] = FakeState(pushed, np.zeros(7), push, 1.0)
    f.filter(q0)
    assert f.latched and "2 force protective stops" in (f.fault or "")


def test_limiter_quasi_static_duration_and_transient_choice() -> None:
    lim = ForceLimiter(ForceLimitConfig(region="hand", stop_at="transient"))
    assert lim.update(200.0, 0.0) is None  # over 140 N, under 280 N: not yet
    assert lim.update(200.0, 0.4) is None
    assert "for 0.5 s" in (lim.update(200.0, 0.5) or "")
    lim = ForceLimiter(ForceLimitConfig(region="face"))
    assert "face limit 65 N" in (lim.update(70.0, 0.0) or "")


def test_force_config_errors_name_the_key() -> None:
    with pytest.raises(ForceConfigError, match="force_limit.region: 'knee'"):
        ForceLimitConfig(region="knee")
    with pytest.raises(ForceConfigError, match="force_limit.scale: 1.5"):
        ForceLimitConfig(scale=1.5)


@pytest.mark.slow  # imports torch: ~30 s on a loaded 2-core box
def test_body_regions_are_the_handover_tasks_limits() -> None:
    from karakuri.sim.tasks.handover import FORCE_LIMITS_N, REGIONS

    assert {r: BODY_REGIONS[r][0] for r in REGIONS} == dict(zip(REGIONS, FORCE_LIMITS_N,
                                                                strict=True))


@pytest.mark.parametrize("max_lead_s", [0.1, 0.0])
def test_a_tool_held_back_does_not_let_the_target_run_ahead(max_lead_s: float) -> None:
    """The measured pose stays at home (the cup held back by the hand) while the policy keeps
    commanding a pose 0.3 rad away: the commanded tool point stays within the allowed speed
    times ``max_lead_s`` of the measured one (a servo would catch up with a larger lead
    faster than allowed); with the bound off it runs ahead, so the test can fail."""
    params = dataclasses.replace(PARAMS, max_lead_s=max_lead_s)
    state = FakeState(SPEC.default_pose.copy(), np.zeros(7), np.zeros(7), 0.0)
    clock = Clock()
    limits = SafetyLimits.from_spec(SPEC)
    f = SafetyFilter(limits, DT, soft_start_s=0.0)
    person = CHAIN(SPEC.default_pose) + np.array([0.25, 0.0, 0.0])
    source = type("P", (), {"read": lambda self: (person, clock.t)})()
    care = CareSafety(CHAIN, DT, CareConfig(params, None), limits.lower, limits.upper,
                      person=source, state=lambda: state, clock=clock)
    f.add_stage(care)
    f.reset(SPEC.default_pose)
    leads = []
    for _ in range(100):
        out = f.filter(SPEC.default_pose + 0.3)
        clock.t += DT
        leads.append(np.linalg.norm(CHAIN(out) - CHAIN(state.position)))
        if max_lead_s:
            assert leads[-1] <= care.allowed_mps * max_lead_s + 1e-9
            assert care.lead_m == pytest.approx(leads[-1])
    if not max_lead_s:
        assert max(leads) > 3 * care.allowed_mps * 0.1
