"""Shared builders for the policy-file tests: a toy 7-joint robot, its policy, its file."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import numpy as np
import torch

from karakuri.policies.export import (
    ActionMap,
    Normalizer,
    ObsTerm,
    PolicyModule,
    build_policy_module,
    export_policy,
    make_metadata,
)
from karakuri.policies.metadata import PolicyMetadata
from karakuri.robot.spec import RobotSpec

ARM = ("shoulder_pan", "shoulder_lift", "elbow", "wrist_1", "wrist_2", "wrist_3")
GRIPPER = ("finger",)
_TMP = tempfile.TemporaryDirectory(prefix="karakuri-policy-tests-")


def toy_spec(joint_names: tuple[str, ...] = ARM + GRIPPER, rate: float = 50.0,
             lower: float = -2.5, upper: float = 2.5) -> RobotSpec:
    n = len(joint_names)
    return RobotSpec(
        name="toy_arm", joint_names=joint_names, lower=np.full(n, lower),
        upper=np.full(n, upper), velocity_limit=np.full(n, 3.0), effort_limit=np.full(n, 50.0),
        accel_limit=np.full(n, 10.0), default_pose=np.linspace(-0.5, 0.5, n),
        kp=np.full(n, 100.0), kd=np.full(n, 5.0), arm_joints=joint_names[:-1],
        gripper_joints=joint_names[-1:], control_rate_hz=rate,
    )


def toy_module(kind: str = "joint_position_delta", seed: int = 0,
               normalize: bool = True) -> tuple[PolicyModule, RobotSpec]:
    """Terms joint_pos_rel, joint_vel*0.1, command, last_action; the arm driven, gripper held."""
    spec = toy_spec()
    torch.manual_seed(seed)
    terms = [
        ObsTerm("joint_pos_rel", "joint_pos", 7, offset=spec.default_pose),
        ObsTerm("joint_vel", "joint_vel", 7, scale=0.1),
        ObsTerm("command", "command", 3),
        ObsTerm("last_action", "last_action", 6),
    ]
    actor = torch.nn.Sequential(torch.nn.Linear(23, 32), torch.nn.ELU(),
                                torch.nn.Linear(32, 6))
    rng = np.random.default_rng(seed)
    norm = Normalizer(rng.normal(size=23), rng.uniform(0.1, 2.0, 23), clip=5.0) \
        if normalize else None
    am = ActionMap.for_robot(spec, kind, 0.5, joints=ARM, clip_action=(-1.0, 1.0),
                             hold={"finger": 0.02})
    return build_policy_module(terms, norm, actor, am), spec


def exported(kind: str = "joint_position_delta") -> tuple[Path, PolicyModule, PolicyMetadata]:
    """One exported toy policy per kind, shared by the tests of a session (do not modify)."""
    return _exported(kind)  # one cache key per kind, however it is passed


@functools.cache
def _exported(kind: str) -> tuple[Path, PolicyModule, PolicyMetadata]:
    module, spec = toy_module(kind)
    meta = make_metadata(module, spec, task="reach", run_id="test-run")
    path = Path(_TMP.name) / f"{kind}.onnx"
    export_policy(module, path, meta, n_random=64)
    return path, module, meta


def robot_signals(batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random joint_pos, joint_vel, command; float32, (batch, size)."""
    rng = np.random.default_rng(seed)
    return {
        "joint_pos": rng.uniform(-2.5, 2.5, (batch, 7)).astype(np.float32),
        "joint_vel": rng.uniform(-3, 3, (batch, 7)).astype(np.float32),
        "command": rng.uniform(-1, 1, (batch, 3)).astype(np.float32),
    }


def torch_act(module: PolicyModule, signals: dict[str, np.ndarray]
              ) -> tuple[np.ndarray, np.ndarray]:
    """(joint_target, action) of the torch module."""
    with torch.no_grad():
        out = module.forward_signals({k: torch.from_numpy(np.asarray(v, np.float32))
                                      for k, v in signals.items()})
    return out[0].numpy(), out[1].numpy()
