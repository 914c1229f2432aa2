"""The sim's copy of the deploy safety filter's target limits equals the filter's own stages,
and a task that asks for them gets them in the env."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from karakuri.robot.registry import load_robot
from karakuri.robot.safety import clip_to_limits, limit_acceleration, limit_velocity
from karakuri.sim.registry import make_env
from karakuri.sim.runtime_limits import limit_targets

SPEC = load_robot("industrial_arm")
DT = 1.0 / SPEC.control_rate_hz
vec = st.lists(st.floats(-1.0, 1.0), min_size=7, max_size=7).map(np.array)


@settings(max_examples=80, deadline=None)
@given(vec, vec, vec)
def test_the_torch_stages_are_the_filters_stages(a, b, v) -> None:
    lo, hi = SPEC.lower, SPEC.upper
    q_prev = np.clip(SPEC.default_pose + 0.5 * a, lo, hi)
    q = q_prev + 0.3 * b
    v_prev = 2.0 * v
    want, _ = clip_to_limits(q, lo, hi)
    want, _ = limit_velocity(want, q_prev, SPEC.velocity_limit * DT)
    want, _ = limit_acceleration(want, q_prev, v_prev, SPEC.accel_limit, DT)
    want, _ = clip_to_limits(want, lo, hi)

    def t(x):
        return torch.tensor(np.asarray(x), dtype=torch.float64)[None]

    got = limit_targets(t(q), t(q_prev), t(v_prev), t(SPEC.velocity_limit * DT)[0],
                        t(SPEC.accel_limit)[0], t(lo)[0], t(hi)[0], DT)
    np.testing.assert_allclose(got[0].numpy(), want, atol=1e-12)


def test_pick_place_targets_move_within_the_robots_limits() -> None:
    env = make_env("pick_place", num_worlds=4, seed=0, randomize=False)
    assert env.task.deploy_limits
    env.reset()
    prev = env.physics.ctrl[:, env.ctrl_idx].clone()
    v_prev = torch.zeros_like(prev)
    vmax = torch.tensor(SPEC.velocity_limit, dtype=torch.float32)
    amax = torch.tensor(SPEC.accel_limit, dtype=torch.float32)
    for k in range(20):
        sign = 1.0 if k < 10 else -1.0  # full actions, then full reverse
        env.step(torch.full((4, env.action_size), sign))
        now = env.physics.ctrl[:, env.ctrl_idx].clone()
        v = (now - prev) / DT
        assert (v.abs() <= vmax + 1e-4).all()
        assert ((v - v_prev).abs() <= amax * DT + 1e-3).all()
        prev, v_prev = now, v
    env.close()
