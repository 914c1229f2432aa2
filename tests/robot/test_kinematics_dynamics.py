"""Numpy rigid-body dynamics of the chain against MuJoCo, and the force estimate in free motion.

``M(q)`` against ``mj_fullM``, ``c + g`` against ``qfrc_bias`` and the compensated gravity
against ``qfrc_gravcomp``, on random states of every shipped robot (joints off the chain at
their reference, still: the chain lumps what they carry at that pose).  Then a hypothesis
test: the care arm driven through the safety filter at its full joint speeds and
accelerations, with no contact, never makes a force protective stop.
"""

from __future__ import annotations

import json
from pathlib import Path

import mujoco
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from karakuri.robot.care_safety import CareConfig, CareSafety
from karakuri.robot.dynamics import ChainDynamics
from karakuri.robot.force_limit import ForceLimitConfig
from karakuri.robot.kinematics import KinematicChain
from karakuri.robot.loader import load_model, spec_from_files
from karakuri.robot.registry import load_robot
from karakuri.robot.safety import SafetyFilter, SafetyLimits

DESCRIPTIONS = Path(__file__).resolve().parents[2] / "robot" / "descriptions"
SHIPPED = sorted(str(p.relative_to(DESCRIPTIONS)) for p in DESCRIPTIONS.rglob("*.yaml"))


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-9))


@pytest.mark.parametrize("robot", SHIPPED)
def test_numpy_dynamics_match_mujoco_on_random_states(robot: str) -> None:
    spec = spec_from_files(DESCRIPTIONS / robot)
    chain = spec.kinematics
    assert chain is not None
    dyn = ChainDynamics(chain)
    assert dyn.known, f"{robot}: the chain carries no inertia"
    model = load_model(spec.model_path)
    data = mujoco.MjData(model)
    on = list(chain.joint_indices)
    names = [spec.joint_names[i] for i in on]
    qadr = [int(model.joint(j).qposadr[0]) for j in names]
    dadr = [int(model.joint(j).dofadr[0]) for j in names]
    full = np.zeros((model.nv, model.nv))
    rng = np.random.default_rng(3)
    for _ in range(20):
        q = rng.uniform(spec.lower, spec.upper)
        dq = rng.normal(size=spec.n_joints) * spec.velocity_limit
        data.qpos[:], data.qvel[:] = model.qpos0, 0.0
        data.qpos[qadr], data.qvel[dadr] = q[on], dq[on]
        mujoco.mj_forward(model, data)
        mujoco.mj_fullM(model, data, full)
        assert _rel(dyn.mass_matrix(q)[np.ix_(on, on)], full[np.ix_(dadr, dadr)]) < 1e-6
        bias = dyn.coriolis(q, dq) + dyn.gravity(q)
        assert _rel(bias[on], data.qfrc_bias[dadr]) < 1e-6
        np.testing.assert_allclose(dyn.gravity(q, compensated=True)[on],
                                   data.qfrc_gravcomp[dadr], atol=1e-9)


def test_inertia_travels_in_the_chain_json() -> None:
    chain = load_robot("care_arm").kinematics
    again = KinematicChain.from_dict(json.loads(json.dumps(chain.to_dict())))
    q = load_robot("care_arm").default_pose + 0.3
    np.testing.assert_array_equal(ChainDynamics(again).mass_matrix(q),
                                  ChainDynamics(chain).mass_matrix(q))
    old = chain.to_dict()  # a policy file exported before the chain carried inertia
    for b in old["bodies"]:
        for key in ("mass", "com", "inertia", "gravcomp"):
            del b[key]
    assert not ChainDynamics(KinematicChain.from_dict(old)).known


SPEC = load_robot("care_arm")
MODEL = load_model(SPEC.model_path)
DT = 1.0 / SPEC.control_rate_hz


class _State:
    def __init__(self, d: mujoco.MjData, qadr: list[int], dadr: list[int], act: list[int],
                 t: float) -> None:
        self.position, self.velocity = d.qpos[qadr].copy(), d.qvel[dadr].copy()
        self.effort, self.stamp = d.actuator_force[act].copy(), t


@settings(max_examples=12, deadline=None)
@given(st.lists(st.lists(st.floats(-1.0, 1.0), min_size=7, max_size=7), min_size=2,
                max_size=6),
       st.integers(5, 30))
def test_free_fast_motion_never_makes_a_force_stop(goals: list[list[float]], hold: int) -> None:
    """Targets across the joint ranges, each held ``hold`` ticks: the filter's speed and
    acceleration limits drive the arm at full speed; the limit is the tightest the SIL push
    test uses (hand, scale 0.3: 42 N)."""
    m, d = MODEL, mujoco.MjData(MODEL)
    qadr = [int(m.joint(j).qposadr[0]) for j in SPEC.joint_names]
    dadr = [int(m.joint(j).dofadr[0]) for j in SPEC.joint_names]
    act = [next(a for a in range(m.nu) if int(m.actuator_trnid[a, 0]) == m.joint(j).id)
           for j in SPEC.joint_names]
    d.qpos[qadr] = d.ctrl[act] = SPEC.default_pose
    mujoco.mj_forward(m, d)
    limits = SafetyLimits.from_spec(SPEC)
    safety = SafetyFilter(limits, DT, soft_start_s=0.0)
    clock = [0.0]
    care = CareSafety(SPEC.kinematics, DT, CareConfig(None, ForceLimitConfig(scale=0.3)),
                      limits.lower, limits.upper,
                      state=lambda: _State(d, qadr, dadr, act, clock[0]), clock=lambda: clock[0])
    safety.add_stage(care)
    safety.reset(SPEC.default_pose)
    steps = round(DT / m.opt.timestep)
    peak = 0.0
    for k in range(len(goals) * hold):
        clock[0] = k * DT
        goal = SPEC.lower + (np.array(goals[k // hold]) + 1.0) / 2.0 * (SPEC.upper - SPEC.lower)
        d.ctrl[act] = safety.filter(goal)
        for _ in range(steps):
            mujoco.mj_step(m, d)
        peak = max(peak, care.force_n)
        assert not care.stopped, f"free motion stopped: {care.events}"
    assert peak < 0.5 * 42.0, peak  # margin: the residual stays under half the limit
