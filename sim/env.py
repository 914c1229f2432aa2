"""BatchedEnv: one task over a batch of physics worlds, with auto-reset and episode stats.

All tensors have a leading world dimension N.  ``step`` applies the task's action map,
advances ``ctrl_dt`` (a whole number of physics steps), computes named rewards, and resets the
worlds whose episode ended; the observation returned for those worlds is the first of the new
episode, and the last of the old one is in ``info["final_obs"]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import mujoco
import numpy as np
import torch

from karakuri.robot.mjcf_index import JointIndex, MjcfIndexError
from karakuri.robot.spec import RobotSpec
from karakuri.sim.backends import make_physics
from karakuri.sim.observations import ObsAssembler
from karakuri.sim.physics import substeps
from karakuri.sim.runtime_limits import limit_targets
from karakuri.sim.task import Task, TaskContext
from karakuri.sim.terms import ActionHead


class EnvError(ValueError):
    """A task or env is inconsistent (reward names, signal sizes, non-finite values)."""


@dataclass
class EpisodeStats:
    """Per-world accumulators of the running episode.

    ``stages`` holds, per world, which of the task's stages the episode has reached in order
    (a prefix: stage k only after stages 0..k-1). Shape: (N, len(task.stages)), bool.
    """

    ret: torch.Tensor
    length: torch.Tensor
    terms: dict[str, torch.Tensor] = field(default_factory=dict)
    stages: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 0, dtype=torch.bool))


def build_spec(robot: RobotSpec, task: Task) -> mujoco.MjSpec:
    """The robot's MjSpec with the task's objects and sensors added (not compiled)."""
    spec = mujoco.MjSpec.from_file(robot.model_path)
    task.build_scene(spec)
    return spec


def build_model(robot: RobotSpec, task: Task) -> mujoco.MjModel:
    """The robot's model plus the task's objects and sensors, compiled."""
    return build_spec(robot, task).compile()


class BatchedEnv:
    """A task on ``num_worlds`` worlds of one physics backend.

    Args:
        task: The task (it owns the robot spec and timing).
        num_worlds: N.
        backend: ``"cpu"`` or ``"warp"``.
        device: Torch device of every tensor (``"cpu"`` or ``"cuda"``).
        seed: Seeds the task's sampling; same seed and backend give the same trajectory.
        randomize: Apply the task's domain randomization (default: on).
    """

    def __init__(
        self,
        task: Task,
        num_worlds: int,
        backend: str = "cpu",
        device: str = "cpu",
        seed: int = 0,
        randomize: bool = True,
    ) -> None:
        self.task = task
        self.robot = task.robot
        self.num_worlds = num_worlds
        self.device = torch.device(device)
        self.model = build_model(task.robot, task)
        self.n_substeps = substeps(task.ctrl_dt, self.model.opt.timestep)
        self.physics = make_physics(backend, self.model, num_worlds, device)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)
        self.rand = task.randomization if randomize else type(task.randomization)()
        task.bind(TaskContext(self.model, num_worlds, self.device, self.generator))
        self._index_joints()
        self.action_map = task.action_map
        self.action_head = ActionHead(self.action_map).to(self.device)
        self.action_size = self.action_map.size
        self._check_rewards()
        self._build_obs()
        self.last_action = torch.zeros(num_worlds, self.action_size, device=self.device)
        self._init_deploy_limits()
        lat = self.rand.action_latency_steps
        self._action_buf = torch.zeros(num_worlds, lat + 1, self.action_size, device=self.device)
        self._latency = torch.zeros(num_worlds, dtype=torch.long, device=self.device)
        self.step_count = torch.zeros(num_worlds, dtype=torch.long, device=self.device)
        self.stats = EpisodeStats(
            torch.zeros(num_worlds, device=self.device),
            torch.zeros(num_worlds, dtype=torch.long, device=self.device),
            stages=torch.zeros(num_worlds, len(task.stages), dtype=torch.bool,
                               device=self.device),
        )
        self._nominal = {
            k: torch.as_tensor(
                np.array(getattr(self.model, k)), dtype=torch.float32, device=self.device
            )
            for k in (
                "geom_friction",
                "body_mass",
                "actuator_gainprm",
                "actuator_biasprm",
                "dof_damping",
            )
        }

    # -- construction helpers ------------------------------------------------------------
    def _index_joints(self) -> None:
        try:
            index = JointIndex.build(self.model, self.robot.joint_names)
        except MjcfIndexError as e:
            raise EnvError(f"robot {self.robot.name!r}: {e}") from e
        self.qpos_idx = torch.tensor(index.qpos, device=self.device)
        self.qvel_idx = torch.tensor(index.dof, device=self.device)
        self.ctrl_idx = torch.tensor(index.act, device=self.device)  # each joint's first actuator

    def _check_rewards(self) -> None:
        probe = self.task.reward_terms(
            self.physics,
            torch.zeros(self.num_worlds, self.action_size, device=self.device),
            torch.zeros(self.num_worlds, self.action_size, device=self.device),
        )
        if set(probe) != set(self.task.reward_scales):
            raise EnvError(
                f"task {self.task.name!r}: reward terms {sorted(probe)} do not match reward "
                f"scales {sorted(self.task.reward_scales)}"
            )

    def _build_obs(self) -> None:
        n = self.robot.n_joints
        sizes = {"joint_pos": n, "joint_vel": n, "last_action": self.action_size}
        sizes.update({k: v.shape[-1] for k, v in self.task.signals(self.physics).items()})
        self.signal_sizes = sizes
        terms = self.task.obs_terms
        policy = [t for t in terms if not t.privileged]
        self.obs_policy = ObsAssembler(policy, sizes).to(self.device)
        #: The policy's terms with their sizes filled: what the policy file is built from.
        self.policy_terms = self.obs_policy.terms
        # critic = the policy's terms first, then the privileged ones
        priv = [t for t in terms if t.privileged]
        self.obs_critic = ObsAssembler(policy + priv, sizes).to(self.device)
        self.robot_signals = self.obs_policy.signal_names

    # -- public API ----------------------------------------------------------------------
    @property
    def obs_size(self) -> int:
        """Width of the policy observation."""
        return self.obs_policy.size

    @property
    def critic_obs_size(self) -> int:
        """Width of the critic observation (policy terms plus privileged ones)."""
        return self.obs_critic.size

    def raw_signals(self) -> dict[str, torch.Tensor]:
        """Every signal, noise-free: joint_pos, joint_vel, last_action and the task's."""
        p = self.physics
        sig = {
            "joint_pos": p.qpos[:, self.qpos_idx],
            "joint_vel": p.qvel[:, self.qvel_idx],
            "last_action": self.last_action,
        }
        sig.update(self.task.signals(p))
        return sig

    def observe(self) -> dict[str, torch.Tensor]:
        """``{"policy": (N, obs_size), "critic": (N, critic_obs_size)}``."""
        sig = self.raw_signals()
        if self.rand.obs_noise > 0:
            sig = self._noisy(sig)
        return {"policy": self.obs_policy(sig), "critic": self.obs_critic(sig)}

    def reset(self) -> dict[str, torch.Tensor]:
        """Reset every world; returns the first observation."""
        self._reset(torch.ones(self.num_worlds, dtype=torch.bool, device=self.device))
        return self.observe()

    def step(
        self, action: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor, dict]:
        """Advance one control step.

        Args:
            action: Raw actions. Shape: (N, action_size).

        Returns:
            obs, reward (N,), terminated (N,) bool, truncated (N,) bool, info with
            ``final_obs`` (for worlds that ended), ``episode`` stats (with ``funnel/<stage>``
            1.0 where the ended episode reached that stage, for a task with stages) and
            ``reward/<name>``.
        """
        action = action.to(self.device, torch.float32)
        if action.shape != (self.num_worlds, self.action_size):
            raise EnvError(
                f"action has shape {tuple(action.shape)}, expected "
                f"({self.num_worlds}, {self.action_size})"
            )
        if not torch.isfinite(action).all():
            raise EnvError("action contains NaN or inf")
        applied = self._delay(action)
        target, _ = self.action_head(applied, self.physics.qpos[:, self.qpos_idx])
        if self.task.deploy_limits:  # what the robot's safety filter lets through
            prev = self.physics.ctrl[:, self.ctrl_idx]
            target = limit_targets(target, prev, self._target_vel, *self._limits,
                                   self.task.ctrl_dt)
            self._target_vel = (target - prev) / self.task.ctrl_dt
        self.physics.ctrl[:, self.ctrl_idx] = target
        self.physics.step(self.n_substeps)
        self.task.after_step(self.physics)
        self.step_count += 1
        prev = self.last_action
        clip = self.action_map.clip_action
        self.last_action = action if clip is None else action.clamp(clip[0], clip[1])
        terms = self.task.reward_terms(self.physics, self.last_action, prev)
        reward = torch.zeros(self.num_worlds, device=self.device)
        info: dict = {}
        for name, value in terms.items():
            scaled = self.task.reward_scales[name] * value
            reward = reward + scaled
            info[f"reward/{name}"] = float(scaled.mean())
            acc = self.stats.terms.setdefault(name, torch.zeros_like(reward))
            acc += scaled
        if not torch.isfinite(reward).all():
            raise EnvError(f"task {self.task.name!r} produced a non-finite reward")
        self._track_stages()
        terminated = self.task.terminated(self.physics)
        truncated = (self.step_count >= self.task.episode_steps) & ~terminated
        done = terminated | truncated
        self.stats.ret += reward
        self.stats.length += 1
        if done.any():
            obs_end = self.observe()
            info["final_obs"] = obs_end
            info["episode"] = self._episode_info(done)
            self._reset(done)
        obs = self.observe()
        info["done_mask"] = done
        return obs, reward, terminated, truncated, info

    def close(self) -> None:
        """Release the backend."""
        close = getattr(self.physics, "close", None)
        if close is not None:
            close()

    # -- internals -----------------------------------------------------------------------
    def _episode_info(self, done: torch.Tensor) -> dict[str, torch.Tensor]:
        idx = torch.nonzero(done).flatten()  # one host sync; indexing by idx copies without one
        ep = {
            "return": self.stats.ret[idx],
            "length": self.stats.length[idx],
            "success": self.task.success(self.physics)[idx].float(),
        }
        for k, v in self.task.metrics(self.physics).items():
            ep[k] = v[idx]
        for k, v in self.stats.terms.items():
            ep[f"reward/{k}"] = v[idx]
        for i, name in enumerate(self.task.stages):
            ep[f"funnel/{name}"] = self.stats.stages[idx, i].float()
        return ep

    def _track_stages(self) -> None:
        """Extend each world's reached prefix of stages by this step's flags (no host sync).

        Stage k is reached when its flag is set and stages 0..k-1 are reached (at this step
        or before): the prefix AND of (reached | now) along the stages.
        """
        if not self.task.stages:
            return
        now = self.task.stage_flags(self.physics)
        if now.shape != self.stats.stages.shape:
            raise EnvError(
                f"task {self.task.name!r}: stage_flags has shape {tuple(now.shape)}, expected "
                f"{tuple(self.stats.stages.shape)} for stages {self.task.stages}"
            )
        seen = (self.stats.stages | now).to(torch.uint8)
        self.stats.stages = torch.cummin(seen, dim=1).values.bool()

    def _init_deploy_limits(self) -> None:
        """The safety filter's per-joint limits (:mod:`karakuri.sim.runtime_limits`)."""
        r, dev, dt = self.robot, self.device, self.task.ctrl_dt

        def vec(x: object) -> torch.Tensor:
            return torch.tensor(list(x), dtype=torch.float32, device=dev)

        self._limits = (vec(r.velocity_limit) * dt, vec(r.accel_limit), vec(r.lower),
                        vec(r.upper))
        self._target_vel = torch.zeros(self.num_worlds, r.n_joints, device=dev)

    def _reset(self, mask: torch.Tensor) -> None:
        if self.rand.changes_model:
            self._randomize_model(mask)
        qpos, qvel = self.task.reset_worlds(mask, self.physics)
        self.physics.reset_worlds(mask, qpos, qvel)
        self.task.after_reset(mask, self.physics)
        # masked_fill_, not x[mask] = v: boolean indexing waits for the GPU (a host sync)
        self.physics.ctrl.masked_fill_(mask[:, None], 0.0)
        self.physics.ctrl[:, self.ctrl_idx] = torch.where(
            mask[:, None], self.physics.qpos[:, self.qpos_idx], self.physics.ctrl[:, self.ctrl_idx]
        )
        self.last_action.masked_fill_(mask[:, None], 0.0)
        self._target_vel.masked_fill_(mask[:, None], 0.0)
        self._action_buf.masked_fill_(mask[:, None, None], 0.0)
        if self.rand.action_latency_steps:
            lat = torch.randint(
                0,
                self.rand.action_latency_steps + 1,
                (self.num_worlds,),
                device=self.device,
                generator=self.generator,
            )
            self._latency = torch.where(mask, lat, self._latency)
        self.step_count.masked_fill_(mask, 0)
        self.stats.ret.masked_fill_(mask, 0.0)
        self.stats.length.masked_fill_(mask, 0)
        for v in self.stats.terms.values():
            v.masked_fill_(mask, 0.0)
        self.stats.stages.masked_fill_(mask[:, None], False)

    def _delay(self, action: torch.Tensor) -> torch.Tensor:
        if not self.rand.action_latency_steps:
            return action
        self._action_buf = torch.roll(self._action_buf, 1, dims=1)
        self._action_buf[:, 0] = action
        return self._action_buf[torch.arange(self.num_worlds, device=self.device), self._latency]

    def _uniform(self, rng: tuple[float, float], shape: tuple[int, ...]) -> torch.Tensor:
        lo, hi = rng
        u = torch.rand(shape, device=self.device, generator=self.generator)
        return lo + (hi - lo) * u

    def _randomize_model(self, mask: torch.Tensor) -> None:
        n, r, nom = self.num_worlds, self.rand, self._nominal
        fr = nom["geom_friction"].expand(n, -1, -1).clone()
        fr[..., 0] *= self._uniform(r.friction, (n, 1))
        mass = nom["body_mass"] * self._uniform(r.mass, (n, nom["body_mass"].shape[0]))
        g = self._uniform(r.actuator_gain, (n, 1))
        gain = nom["actuator_gainprm"].expand(n, -1, -1).clone()
        bias = nom["actuator_biasprm"].expand(n, -1, -1).clone()
        gain[..., 0] *= g
        bias[..., 1] *= g
        bias[..., 2] *= g
        damp = nom["dof_damping"] * self._uniform(r.joint_damping, (n, 1))
        self.physics.set_model_params(
            mask,
            {
                "geom_friction": fr,
                "body_mass": mass,
                "actuator_gainprm": gain,
                "actuator_biasprm": bias,
                "dof_damping": damp,
            },
        )

    def _noisy(self, sig: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = dict(sig)
        noisy = {t.signal: t.noise for t in self.obs_critic.terms if t.noise > 0}
        for name, std in noisy.items():
            if name in out and name != "last_action":
                x = out[name]
                eps = torch.randn(x.shape, device=self.device, generator=self.generator)
                out[name] = x + eps * (std * self.rand.obs_noise)
        return out
