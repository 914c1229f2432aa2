"""The envelope: trusted sources intersected; a policy file's claims checked, never used."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from karakuri.robot.envelope import (
    Description,
    Envelope,
    EnvelopeError,
    LimitSet,
    load_description,
    policy_claims,
)
from karakuri.robot.spec import RobotSpec, RobotSpecError

JOINTS = ("a", "b")


def spec(vel=(2.0, 2.0), acc=(50.0, 50.0), lower=(-1.0, -1.0), upper=(1.0, 1.0)) -> RobotSpec:
    return RobotSpec(name="toy", joint_names=JOINTS, lower=np.array(lower),
                     upper=np.array(upper), velocity_limit=np.array(vel),
                     effort_limit=np.ones(2), accel_limit=np.array(acc),
                     default_pose=np.zeros(2), kp=np.ones(2), kd=np.ones(2), arm_joints=JOINTS)


def caps(lower=(-0.8, -1.5), upper=(1.0, 0.9), vel=(1.5, 3.0)) -> LimitSet:
    lim = LimitSet.unknown("MCU CAPS on /dev/x", 2)
    lim.lower[:], lim.upper[:], lim.velocity_limit[:] = lower, upper, vel
    return lim


def test_intersection_is_the_tightest_and_remembers_its_source():
    env = Envelope.intersect(JOINTS, LimitSet.from_spec(spec(), "description"), caps())
    np.testing.assert_array_equal(env.lower, [-0.8, -1.0])
    np.testing.assert_array_equal(env.upper, [1.0, 0.9])
    np.testing.assert_array_equal(env.velocity_limit, [1.5, 2.0])
    np.testing.assert_array_equal(env.accel_limit, [50.0, 50.0])
    assert env.where("lower", "a") == "MCU CAPS on /dev/x"
    assert env.where("upper", "a") == "description = MCU CAPS on /dev/x"
    assert env.where("velocity_limit", "b") == "description"
    assert "a: position [-0.8 (MCU CAPS" in env.describe()[0]
    tight = env.apply_to(spec())
    assert tight.velocity_limit[0] == 1.5 and tight.lower[0] == -0.8


@given(arrays(np.float64, 2, elements=st.floats(0.1, 10)),
       arrays(np.float64, 2, elements=st.floats(0.1, 10)))
def test_intersection_never_exceeds_any_source(v1, v2):
    a, b = LimitSet.unknown("a", 2), LimitSet.unknown("b", 2)
    a.velocity_limit[:], b.velocity_limit[:] = v1, v2
    env = Envelope.intersect(JOINTS, a, b)
    assert np.all(env.velocity_limit <= v1) and np.all(env.velocity_limit <= v2)
    assert np.all((env.velocity_limit == v1) | (env.velocity_limit == v2))


def test_missing_limit_names_joint_and_sources():
    partial = LimitSet.unknown("robot description toy.yaml", 2)
    partial.velocity_limit[:] = 1.0
    partial.accel_limit[:] = 5.0
    partial.lower[0], partial.upper[0] = -1.0, 1.0
    env = Envelope.intersect(JOINTS, partial)
    with pytest.raises(EnvelopeError, match=r"no trusted lower for joint 'b'.*toy.yaml"):
        env.check_complete()
    Envelope.intersect(JOINTS, partial, caps()).check_complete()  # CAPS fills it in


def test_nan_from_a_source_is_refused():
    bad = caps()
    bad.velocity_limit[1] = np.nan
    with pytest.raises(EnvelopeError, match="velocity_limit of joint 'b' is nan"):
        Envelope.intersect(JOINTS, bad)


def test_finding_1_file_claiming_100_rad_s_is_refused_naming_joint_value_limit():
    """Finding 1: metadata claiming 100 rad/s and 1e5 rad/s² must not pass."""
    env = Envelope.intersect(JOINTS, LimitSet.from_spec(spec(), "robot description toy"))
    liar = spec(vel=(100.0, 100.0), acc=(1e5, 1e5)).to_dict()
    claims = policy_claims(liar, None, None, JOINTS, "the policy evil.onnx")
    with pytest.raises(EnvelopeError, match=r"evil.onnx asks for a velocity limit of 100 on "
                                            r"joint 'a', beyond the trusted 2 \(robot desc"):
        env.check_claims(claims)
    acc_only = policy_claims(spec(acc=(50.0, 1e5)).to_dict(), None, None, JOINTS, "f")
    with pytest.raises(EnvelopeError, match=r"acceleration limit of 100000 on joint 'b'"):
        env.check_claims(acc_only)


def test_clip_range_wider_than_the_envelope_is_refused():
    env = Envelope.intersect(JOINTS, LimitSet.from_spec(spec(), "d"), caps())
    honest = policy_claims(spec().to_dict(), (-1.0, -1.0), (1.0, 1.0), JOINTS, "f")
    with pytest.raises(EnvelopeError, match=r"lower position limit of -1 on joint 'a'.*-0.8"):
        env.check_claims(honest)  # the MCU allows less than the file's graph may command
    env2 = Envelope.intersect(JOINTS, LimitSet.from_spec(spec(), "d"))
    env2.check_claims(honest)
    wide = policy_claims(None, (-1.0, -1.0), (1.0, 7.0), JOINTS, "f")
    with pytest.raises(EnvelopeError, match=r"upper position limit of 7 on joint 'b'"):
        env2.check_claims(wide)


def test_float32_caps_do_not_refuse_an_honest_file():
    s = spec(vel=(3.1416, 3.1416), lower=(-3.1416, -2.8), upper=(3.1416, 2.8))
    f32 = LimitSet("caps", s.lower.astype(np.float32).astype(np.float64),
                   s.upper.astype(np.float32).astype(np.float64),
                   s.velocity_limit.astype(np.float32).astype(np.float64), np.full(2, np.inf))
    env = Envelope.intersect(JOINTS, LimitSet.from_spec(s, "d"), f32)
    env.check_claims(policy_claims(s.to_dict(), tuple(s.lower), tuple(s.upper), JOINTS, "f"))


def test_load_description_reads_the_installed_robot():
    desc = load_description("industrial_arm")
    assert desc.name == "industrial_arm" and desc.joint_names[0] == "shoulder_pan"
    assert desc.limits.velocity_limit[0] == pytest.approx(3.1416)
    assert desc.limits.upper[2] == pytest.approx(2.8)  # elbow, from the sidecar
    assert desc.limits.source == "robot description industrial_arm.yaml"
    with pytest.raises(RobotSpecError, match="unknown robot 'nosuch'.*registered robots"):
        load_description("nosuch")


def test_description_without_mujoco_reads_the_sidecar_only(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_mujoco(name, *a, **kw):
        if name == "mujoco":
            raise ImportError("no mujoco here")
        return real(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_mujoco)
    desc = load_description("industrial_arm")
    assert desc.spec is None and desc.control_rate_hz == 50.0
    assert desc.limits.upper[2] == pytest.approx(2.8)
    assert desc.limits.upper[-1] == pytest.approx(0.04)  # the sidecar repeats the gripper's
    assert np.all(np.isfinite(desc.limits.lower)) and np.all(np.isfinite(desc.limits.upper))
    d2 = Description.from_spec(spec())
    assert d2.spec is not None and d2.limits.velocity_limit[0] == 2.0
