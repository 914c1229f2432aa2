"""The Task contract: six required members suffice; the env calls the hooks in order, once each."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from karakuri.robot.registry import load_robot
from karakuri.sim.env import BatchedEnv
from karakuri.sim.physics import Physics
from karakuri.sim.task import ActionMap, ObsTerm, Task
from karakuri.sim.terms import ActionHead


class Minimal(Task):
    """Only what a task must define; it records every call the env makes."""

    name = "minimal"

    def __init__(self) -> None:
        super().__init__(load_robot("industrial_arm"), ctrl_dt=0.02, episode_s=0.1)
        self.calls: list[str] = []

    @property
    def obs_terms(self) -> list[ObsTerm]:
        return [ObsTerm("q", "joint_pos"), ObsTerm("a", "last_action"),
                ObsTerm("dq", "joint_vel", scale=0.1, privileged=True)]

    @property
    def action_map(self) -> ActionMap:
        return ActionMap.for_robot(self.robot, "joint_position_delta", 0.05,
                                   joints=self.robot.arm_joints)

    @property
    def reward_scales(self) -> dict[str, float]:
        return {"still": -1.0}

    def reset_worlds(self, mask: torch.Tensor, physics: Physics
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        self.calls.append("reset_worlds")
        return physics.qpos.clone(), torch.zeros_like(physics.qvel)

    def reward_terms(self, physics: Physics, action: torch.Tensor, last_action: torch.Tensor
                     ) -> dict[str, torch.Tensor]:
        self.calls.append("reward_terms")
        return {"still": (physics.qvel**2).sum(-1)}

    def success(self, physics: Physics) -> torch.Tensor:
        self.calls.append("success")
        return torch.ones(physics.num_worlds, dtype=torch.bool)

    def after_reset(self, mask: torch.Tensor, physics: Physics) -> None:
        self.calls.append(f"after_reset:{int(mask.sum())}")

    def after_step(self, physics: Physics) -> None:
        self.calls.append("after_step")


def test_a_task_with_only_the_required_members_runs_and_hooks_come_in_order() -> None:
    task = Minimal()
    env = BatchedEnv(task, num_worlds=2, seed=0)
    assert env.obs_size == task.robot.n_joints + task.robot.n_arm
    assert env.critic_obs_size == env.obs_size + task.robot.n_joints
    task.calls.clear()
    env.reset()
    assert task.calls == ["reset_worlds", "after_reset:2"]
    task.calls.clear()
    for _ in range(task.episode_steps):
        env.step(torch.zeros(2, env.action_size))
    # each step: physics, after_step, then rewards; the last step ends the episode
    step = ["after_step", "reward_terms"]
    assert task.calls == step * task.episode_steps + ["success", "reset_worlds", "after_reset:2"]
    env.close()


def _reference(am: ActionMap, action: np.ndarray, q: np.ndarray) -> np.ndarray:
    """The action map's definition, joint by joint (float64)."""
    lo, hi = am.clip_action or (-np.inf, np.inf)
    a = np.clip(action, lo, hi)
    target = np.array([list(am.hold)] * len(q))
    for k, j in enumerate(am.joints or ()):
        base = q[:, j] if am.kind == "joint_position_delta" else am.default_pose[j]
        target[:, j] = base + am.scale[k] * a[:, k]
    return np.clip(target, am.lower, am.upper)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), n=st.integers(1, 6),
       kind=st.sampled_from(["joint_position_delta", "joint_position"]))
def test_action_head_is_the_action_map(data: st.DataObject, n: int, kind: str) -> None:
    joints = data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=n, unique=True))
    floats = st.floats(-2.0, 2.0, allow_nan=False, width=32)
    lower = np.array(data.draw(st.lists(floats, min_size=n, max_size=n)))
    upper = lower + np.array(data.draw(st.lists(st.floats(0.0625, 2.0, width=32), min_size=n,
                                                max_size=n)))
    am = ActionMap(kind=kind, scale=tuple(data.draw(st.lists(st.floats(0.0625, 1.0, width=32),
                                                             min_size=len(joints),
                                                             max_size=len(joints)))),
                   lower=lower, upper=upper, default_pose=(lower + upper) / 2,
                   joints=tuple(joints), hold=data.draw(st.lists(floats, min_size=n, max_size=n)))
    action = np.array(data.draw(st.lists(st.lists(st.floats(-3, 3, width=32), min_size=len(joints),
                                                  max_size=len(joints)), min_size=1, max_size=4)))
    q = np.array(data.draw(st.lists(st.lists(floats, min_size=n, max_size=n),
                                    min_size=len(action), max_size=len(action))))
    target, clipped = ActionHead(am)(torch.tensor(action, dtype=torch.float32),
                                     torch.tensor(q, dtype=torch.float32))
    np.testing.assert_allclose(target.numpy(), _reference(am, action, q), atol=1e-5)
    assert np.all(np.abs(clipped.numpy()) <= 1.0)
    # the map's own apply is the same module
    again, _ = am.apply(torch.tensor(action, dtype=torch.float32),
                        torch.tensor(q, dtype=torch.float32))
    assert torch.equal(again, target)


def test_action_map_and_terms_name_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="2 scales for 3 driven joints"):
        ActionMap("joint_position", (1.0, 2.0), lower=[-1] * 3, upper=[1] * 3,
                  default_pose=[0] * 3)
    with pytest.raises(ValueError, match="lower >= upper at joints \\[1\\]"):
        ActionMap("joint_position", 1.0, lower=[0, 1], upper=[1, 1], default_pose=[0, 0])
    with pytest.raises(ValueError, match="offset has 2 values for a signal of width 3"):
        ObsTerm("x", "command", offset=(1.0, 2.0)).sized(3)
    with pytest.raises(ValueError, match="'x' scale is not finite"):
        ObsTerm("x", "command", scale=float("nan"))
