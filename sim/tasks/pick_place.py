"""Pick and place: grasp a box from a randomized pose on the table and put it into a bin.

The industrial arm stands on the cell's table (the floor plane, z = 0).  A 4 cm box (0.1 kg)
lies at a random position and yaw in the pick area; a bin with 8 cm walls stands at a fixed
position (``PickPlaceConfig.bin_xy``).  Success, judged at the episode's end: the box is inside
the bin, released (gripper open, no finger-pad contact) and the arm is clear (tool above
``clear_height``).

Observations (policy): joint positions and velocities (the gripper is the 7th joint), the box
pose as a vision system reports it (``object_pose`` = x, y, z in m, world frame, and yaw in rad
folded into [-pi/4, pi/4) since a cube looks the same every quarter turn; noisy in simulation
when randomization is on) and the last action.  The bin is fixed, so it is not an input.
Privileged (critic only): the true box position and orientation, the tool position, box-to-tool
and box-to-bin vectors and the finger-pad contact forces.

Actions: deltas of all seven joint targets from the measured pose (arm: rad, gripper: m).
Rewards: named stage terms, each in [0, 1] and saturated once the box is in the bin, so every
later stage pays more than the one before: reach, grasp, lift, carry, place, release, clear;
minus action-rate and joint-speed penalties.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import mujoco
import torch

from karakuri.robot.spec import RobotSpec
from karakuri.sim.physics import Physics
from karakuri.sim.task import ActionMap, ObsTerm, Randomization, Task, TaskContext
from karakuri.sim.tasks.pick_place_scene import (
    BOX,
    BOX_HALF,
    PAD_GEOMS,
    S_BOX_POS,
    S_BOX_QUAT,
    S_TOOL,
    S_TOUCH,
    build_scene,
    held_box_table,
)

__all__ = ["BOX_HALF", "PAD_GEOMS", "PickPlace", "PickPlaceConfig", "fold_yaw", "tanh_kernel"]
TOUCH_N = 0.1  # a pad counts as touching above this normal force, N
REACH_M = 0.03  # the tool is at the box within this distance of its centre, m
LIFT_M = 0.02  # a grasped box counts as lifted above this height off the table, m


def default_randomization() -> Randomization:
    """Ranges used when training with ``--randomize``: object mass/friction, gains, noise."""
    return Randomization(
        friction=(0.7, 1.3),
        mass=(0.6, 1.5),
        actuator_gain=(0.9, 1.1),
        joint_damping=(0.8, 1.25),
        obs_noise=1.0,
        action_latency_steps=1,
    )


@dataclass(frozen=True)
class PickPlaceConfig:
    """Pick-and-place settings (lengths in m, world frame; angles in rad).

    Attributes:
        ctrl_dt: Control period, s.
        episode_s: Episode length, s.
        box_low: Lower corner (x, y) of the pick area the box centre is drawn from.
        box_high: Upper corner (x, y) of the pick area.
        yaw_range: The box yaw is uniform in +-yaw_range.
        bin_xy: Centre of the bin.
        bin_inner: Half-width of the bin's inside.
        wall_height: Height of the bin walls.
        clear_height: The tool counts as clear above this height.
        arm_scale: Arm joint target change per unit action, rad.
        gripper_scale: Gripper target lead per unit action, m.  A held box needs a steady
            squeeze, and a delta from the measured opening squeezes only while the action
            stays negative: at 0.04 m (the whole opening) an action of -0.1 already presses
            each finger with 4 N, enough for a 0.1 kg box.
        init_noise: Half-width of the uniform noise on the initial arm pose, rad.
        pose_noise: Std of the simulated vision noise on ``object_pose`` (m and rad).
        curriculum_fraction: Training only (:attr:`PickPlace.training`): this fraction of
            resets starts from :func:`pick_place_scene.held_box_table` (the box already held
            on the table, on the way or above the bin; or the open gripper around it), so
            grasping, lifting, carrying and releasing pay from the start.  Evaluation, export
            and SIL always use the normal reset.
        lift_full: Height of the grasped box off the table at which ``lift`` pays in full, m
            (about the box's size: a held box is then clear of the table and the pick area).
        reach_scale: Weight of the ``reach`` term.  The held-box starts' large returns set
            the reward normalization's scale, which shrinks the reach signal of the normal
            starts; 2 (not 1) keeps it learnable.
        randomize: Domain randomization ranges.
    """

    ctrl_dt: float = 0.02
    episode_s: float = 8.0
    box_low: tuple[float, float] = (0.40, -0.25)
    box_high: tuple[float, float] = (0.62, 0.05)
    yaw_range: float = math.pi / 4
    bin_xy: tuple[float, float] = (0.50, 0.32)
    bin_inner: float = 0.08
    wall_height: float = 0.08
    clear_height: float = 0.18
    arm_scale: float = 0.1
    gripper_scale: float = 0.04
    init_noise: float = 0.05
    pose_noise: float = 0.005
    curriculum_fraction: float = 0.4
    lift_full: float = 0.05
    reach_scale: float = 2.0
    randomize: Randomization = field(default_factory=default_randomization)

    def __post_init__(self) -> None:
        if any(lo >= hi for lo, hi in zip(self.box_low, self.box_high, strict=True)):
            raise ValueError(f"box_low {self.box_low} must be below box_high {self.box_high}")
        if self.bin_inner <= BOX_HALF:
            raise ValueError(f"bin_inner {self.bin_inner} m must exceed the box half-size")
        if min(self.arm_scale, self.gripper_scale, self.wall_height) <= 0:
            raise ValueError("arm_scale, gripper_scale and wall_height must be > 0")
        if not 0.0 <= self.curriculum_fraction <= 1.0:
            raise ValueError(f"curriculum_fraction {self.curriculum_fraction} must be in [0, 1]")


def yaw_of(quat: torch.Tensor) -> torch.Tensor:
    """Yaw (rotation about world z) of quaternions (w, x, y, z). Shape: (N, 4) -> (N,), rad."""
    w, x, y, z = quat.unbind(-1)
    return torch.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))


def fold_yaw(yaw: torch.Tensor) -> torch.Tensor:
    """Yaw modulo a quarter turn, in [-pi/4, pi/4): a cube's pose as vision reports it."""
    q = math.pi / 2
    return torch.remainder(yaw + q / 2, q) - q / 2


def tanh_kernel(dist: torch.Tensor, coarse: float, fine: float) -> torch.Tensor:
    """Mean of two ``1 - tanh(d / width)`` kernels, in [0, 1]: a pull from afar and precision near.

    Args:
        dist: Distances, (N,) m.
        coarse: Width that still pays across the workspace, m.
        fine: Width that pays for the last centimetres, m.
    """
    return 1 - 0.5 * (torch.tanh(dist / coarse) + torch.tanh(dist / fine))


def mirror_qposadr(model: mujoco.MjModel, joint_id: int) -> list[int]:
    """Qpos addresses of the joints a joint equality couples to ``joint_id`` (mirror fingers)."""
    return [
        int(model.jnt_qposadr[model.eq_obj1id[e]])
        for e in range(model.neq)
        if model.eq_type[e] == mujoco.mjtEq.mjEQ_JOINT and model.eq_obj2id[e] == joint_id
    ]


class PickPlace(Task):
    """The pick-and-place task (see module docstring)."""

    name = "pick_place"
    deploy_limits = True  # a full action asks for 5 rad/s of target; the filter lets pi through
    extra_signals: ClassVar[dict[str, int]] = {"object_pose": 4}
    #: The funnel (docs/tasks.md): tool at the box, both pads on it, held above LIFT_M, held
    #: over the bin, box in the bin, let go, arm clear (= the success condition).
    stages: ClassVar[tuple[str, ...]] = (
        "reached", "grasped", "lifted", "carried", "placed", "released", "cleared")
    #: Set by a trainer on its training env only: ``curriculum_fraction`` of the resets then
    #: start from the curriculum table.  Evaluation, export and SIL leave it off.
    training: bool = False

    def __init__(self, robot: RobotSpec, config: PickPlaceConfig | None = None) -> None:
        self.cfg = config or PickPlaceConfig()
        super().__init__(robot, self.cfg.ctrl_dt, self.cfg.episode_s)
        if not robot.tool_site or len(robot.gripper_joints) != 1:
            raise ValueError(
                f"pick_place needs a tool site and one gripper joint; robot {robot.name!r} has "
                f"tool_site={robot.tool_site!r}, gripper_joints={list(robot.gripper_joints)}"
            )

    # -- declaration --------------------------------------------------------------------
    @property
    def obs_terms(self) -> list[ObsTerm]:
        """Robot and vision signals, then privileged state for the critic."""
        return [
            ObsTerm(
                "joint_pos_rel", "joint_pos", offset=tuple(self.robot.default_pose), noise=0.005
            ),
            ObsTerm("joint_vel", "joint_vel", scale=0.1, noise=0.05),
            ObsTerm("object_pose", "object_pose", noise=self.cfg.pose_noise),
            ObsTerm("last_action", "last_action"),
            ObsTerm("box_pos", "box_pos", privileged=True),
            ObsTerm("box_quat", "box_quat", privileged=True),
            ObsTerm("box_to_tool", "box_to_tool", scale=5.0, privileged=True),
            ObsTerm("box_to_bin", "box_to_bin", scale=2.0, privileged=True),
            ObsTerm("pad_force", "pad_force", scale=0.1, privileged=True),
        ]

    @property
    def reward_scales(self) -> dict[str, float]:
        """Stage terms grow along the task; penalties are small."""
        return {
            "reach": self.cfg.reach_scale,
            "open": 0.5,
            "grasp": 1.0,
            "lift": 2.0,
            "carry": 3.0,
            "place": 4.0,
            "release": 2.0,
            "clear": 3.0,
            "action_rate": -0.02,
            "joint_vel": -0.001,
        }

    @property
    def action_map(self) -> ActionMap:
        """Deltas on the six arm joints and the gripper."""
        r = self.robot
        return ActionMap(
            kind="joint_position_delta",
            joints=tuple(range(r.n_joints)),
            scale=(self.cfg.arm_scale,) * r.n_arm + (self.cfg.gripper_scale,),
            hold=tuple(r.default_pose),
            lower=tuple(r.lower),
            upper=tuple(r.upper),
            default_pose=tuple(r.default_pose),
        )

    @property
    def randomization(self) -> Randomization:
        """As configured (used when the env is built with ``randomize=True``)."""
        return self.cfg.randomize

    # -- scene ---------------------------------------------------------------------------
    def build_scene(self, spec: mujoco.MjSpec) -> None:
        """Add the box, the bin and the sensors (:func:`pick_place_scene.build_scene`)."""
        build_scene(self.cfg, self.robot, spec)

    def bind(self, ctx: TaskContext) -> None:
        """Resolve sensors and joints; allocate per-world buffers."""
        m, dev = ctx.model, ctx.device

        def sens(name: str, k: int) -> slice:
            adr = int(m.sensor_adr[m.sensor(name).id])
            return slice(adr, adr + k)

        self._tool, self._box_pos = sens(S_TOOL, 3), sens(S_BOX_POS, 3)
        self._box_quat = sens(S_BOX_QUAT, 4)
        self._touch = [int(m.sensor_adr[m.sensor(s).id]) for s in S_TOUCH]
        j = m.joint(f"{BOX}_joint")
        self._box_qadr, self._box_dadr = int(j.qposadr[0]), int(j.dofadr[0])
        self._arm_qadr = torch.tensor(
            [int(m.joint(n).qposadr[0]) for n in self.robot.joint_names], device=dev
        )
        self._arm_dadr = torch.tensor(
            [int(m.joint(n).dofadr[0]) for n in self.robot.arm_joints], device=dev
        )
        grip = m.joint(self.robot.gripper_joints[0])
        self._grip_adr = int(grip.qposadr[0])
        self._open_m = float(m.jnt_range[grip.id, 1])  # the gripper's full opening, m
        self._mirror_adr = torch.tensor(mirror_qposadr(m, int(grip.id)), dtype=torch.long,
                                        device=dev)
        self._qpos0 = torch.as_tensor(m.qpos0, dtype=torch.float32, device=dev)
        self._home = torch.tensor(self.robot.default_pose.tolist(), device=dev)
        self._gen, self._dev = ctx.generator, dev
        self._lo = torch.tensor(self.cfg.box_low, device=dev)
        self._hi = torch.tensor(self.cfg.box_high, device=dev)
        self._bin = torch.tensor(self.cfg.bin_xy, device=dev)
        self._above_bin = torch.tensor([*self.cfg.bin_xy, self.cfg.wall_height + 0.07], device=dev)
        self.max_lift = torch.zeros(ctx.num_worlds, device=dev)
        self._held = None
        if self.cfg.curriculum_fraction > 0:  # solved once on the host, indexed on the device
            table = held_box_table(m, self.robot, self.cfg)
            self._held = torch.as_tensor(table, dtype=torch.float32, device=dev)

    # -- episodes ------------------------------------------------------------------------
    def reset_worlds(
        self, mask: torch.Tensor, physics: Physics
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A new box pose and a noisy home pose (gripper open) for the masked worlds.

        When :attr:`training`, a ``curriculum_fraction`` of them start from a row of the
        curriculum table instead (one draw per world; the other rows are unchanged).
        """
        n, dev, g = physics.num_worlds, self._dev, self._gen
        qpos = self._qpos0.expand(n, -1).clone()
        noise = torch.rand(n, self.robot.n_joints, device=dev, generator=g) * 2 - 1
        noise[:, self.robot.n_arm :] = 0.0
        qpos[:, self._arm_qadr] = self._home + self.cfg.init_noise * noise
        qpos[:, self._mirror_adr] = qpos[:, self._grip_adr : self._grip_adr + 1].clone()
        u = torch.rand(n, 3, device=dev, generator=g)
        xy = self._lo + (self._hi - self._lo) * u[:, :2]
        half_yaw = (u[:, 2] * 2 - 1) * self.cfg.yaw_range / 2
        a = self._box_qadr
        qpos[:, a : a + 2] = xy
        qpos[:, a + 2] = BOX_HALF
        qpos[:, a + 3] = torch.cos(half_yaw)
        qpos[:, a + 4 : a + 6] = 0.0
        qpos[:, a + 6] = torch.sin(half_yaw)
        if self.training and self._held is not None:
            held = torch.rand(n, device=dev, generator=g) < self.cfg.curriculum_fraction
            row = torch.randint(0, self._held.shape[0], (n,), device=dev, generator=g)
            qpos = torch.where(held[:, None], self._held[row], qpos)
        self.max_lift = torch.where(mask, torch.zeros_like(self.max_lift), self.max_lift)
        return qpos, torch.zeros(n, physics.qvel.shape[1], device=dev)

    # -- state ---------------------------------------------------------------------------
    def _state(self, physics: Physics) -> dict[str, torch.Tensor]:
        """Positions and stage flags shared by rewards, success and metrics."""
        sd = physics.sensordata
        tool, box = sd[:, self._tool], sd[:, self._box_pos]
        fl, fr = sd[:, self._touch[0]], sd[:, self._touch[1]]
        c = self.cfg
        near = torch.linalg.norm(box - tool, dim=-1) < REACH_M
        grasped = (fl > TOUCH_N) & (fr > TOUCH_N) & near
        off = (box[:, :2] - self._bin).abs().amax(dim=-1)
        in_bin = (off < c.bin_inner - 0.005) & (box[:, 2] < c.wall_height)
        released = (physics.qpos[:, self._grip_adr] > 0.03) & (fl < 0.01) & (fr < 0.01)
        clear = tool[:, 2] > c.clear_height
        return {
            "tool": tool, "box": box, "grasped": grasped, "in_bin": in_bin,
            "released": released, "success": in_bin & released & clear,
            "lift": box[:, 2] - BOX_HALF, "near": near, "over_bin": off < c.bin_inner - 0.005,
        }

    def signals(self, physics: Physics) -> dict[str, torch.Tensor]:
        """``object_pose`` (vision) and the privileged box, tool and contact state."""
        sd = physics.sensordata
        tool, box, quat = sd[:, self._tool], sd[:, self._box_pos], sd[:, self._box_quat]
        pose = torch.cat([box, fold_yaw(yaw_of(quat))[:, None]], dim=-1)
        above = self._above_bin.expand_as(box)
        return {
            "object_pose": pose,
            "box_pos": box,
            "box_quat": quat,
            "box_to_tool": tool - box,
            "box_to_bin": above - box,
            "pad_force": sd[:, self._touch],
        }

    def reward_terms(
        self, physics: Physics, action: torch.Tensor, last_action: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Stage terms in [0, 1] (see module docstring) and two penalties."""
        s, c = self._state(physics), self.cfg
        in_bin, grasped = s["in_bin"], s["grasped"]
        one = torch.ones_like(s["lift"])
        d_tool = torch.linalg.norm(s["tool"] - s["box"], dim=-1)
        d_bin = torch.linalg.norm(self._above_bin - s["box"], dim=-1)
        lifted = grasped & (s["lift"] > LIFT_M)
        return {
            # 0.4 m: the home pose is 0.3-0.5 m from the box, where a 0.2 m kernel is flat.
            "reach": torch.where(in_bin, one, tanh_kernel(d_tool, 0.4, 0.04)),
            # An open hand until the box is held: without it the held-box starts teach closing
            # early, and a hand that arrives closed cannot grasp (seen at 0.8 M steps).
            "open": (~grasped & ~in_bin) * (physics.qpos[:, self._grip_adr] / self._open_m),
            "grasp": (grasped & ~in_bin).float(),
            "lift": torch.where(in_bin, one, grasped * (s["lift"] / c.lift_full).clamp(0, 1)),
            # Coarse and fine: the pick area is 0.3-0.6 m from the bin, where a 0.15 m kernel
            # alone paid under 1 % of its maximum and a policy that lifted never carried.
            "carry": torch.where(in_bin, one, lifted * tanh_kernel(d_bin, 0.6, 0.1)),
            "place": in_bin.float(),
            "release": (in_bin & s["released"]).float(),
            "clear": s["success"].float(),
            "action_rate": torch.sum((action - last_action) ** 2, dim=-1),
            "joint_vel": torch.sum(physics.qvel[:, self._arm_dadr] ** 2, dim=-1),
        }

    def after_step(self, physics: Physics) -> None:
        """Track the highest grasped lift of each world's episode (the ``max_lift`` metric)."""
        s = self._state(physics)
        self.max_lift = torch.maximum(self.max_lift, s["lift"] * s["grasped"])

    def stage_flags(self, physics: Physics) -> torch.Tensor:
        """The :attr:`stages` each world satisfies now. Shape: (N, 7) bool."""
        s = self._state(physics)
        lifted = s["grasped"] & (s["lift"] > LIFT_M)
        placed = s["in_bin"]
        return torch.stack([s["near"], s["grasped"], lifted, lifted & s["over_bin"], placed,
                            placed & s["released"], s["success"]], dim=-1)

    def terminated(self, physics: Physics) -> torch.Tensor:
        """The box left the reachable table (knocked away or thrown): a failure."""
        box = physics.sensordata[:, self._box_pos]
        return (torch.linalg.norm(box[:, :2], dim=-1) > 1.0) | (box[:, 2] < -0.05)

    def success(self, physics: Physics) -> torch.Tensor:
        """Box in the bin, released, arm clear."""
        return self._state(physics)["success"]

    def metrics(self, physics: Physics) -> dict[str, torch.Tensor]:
        """Final box-to-bin distance (xy, m), box in bin (0/1), highest grasped lift (m)."""
        s = self._state(physics)
        return {
            "bin_distance": torch.linalg.norm(s["box"][:, :2] - self._bin, dim=-1),
            "in_bin": s["in_bin"].float(),
            "max_lift": self.max_lift.clone(),
        }
