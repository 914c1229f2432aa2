"""Handover: carry a cup to a seated person's moving hand and hold it there, gently.

The care arm is mounted beside a wheelchair; its user sits at +y, facing +x.  The arm starts
at home holding a 7 cm cup upright (the cup is modelled as already grasped: rigidly attached
between the closed fingers; grasping is pick_place's subject).  The user's hand (0.6 kg) is
held by the user's arm (300 N/m, 20 N·s/m, 5 cm of travel) to a point that drifts slowly
about a rest point on a smooth Lissajous path, x_i(t) = c_i + A_i sin(w_i t + phi_i),
periods 7-11 s, amplitude and phase random per episode (peak speed ~5 cm/s).  Success, at
the episode's end: the cup centre within ``success_radius`` of the handover point 9 cm above
the palm, the cup upright (tilt below ``max_tilt``), and no safety violation in the episode.

Safety limits (a violation ends the episode with the ``violation`` penalty):

* Speed: the tool may not move faster than 0.25 m/s while it is within 0.3 m of the hand.
  Source: ISO 10218-1:2011, 5.6 (reduced speed: TCP speed at most 250 mm/s), applied here as
  a zone around the person's hand.
* Contact force on the person, per body region, the quasi-static maximum permissible forces
  of ISO/TS 15066:2016, Annex A, Table A.2: hands and fingers 140 N, lower arms and wrist
  joints 160 N, chest 140 N, face 65 N.  The transient limits (twice these for hand, arm and
  chest; none for the face) are not used: the stricter value holds for every contact.  The
  hand's 0.6 kg is the effective mass of hands and fingers in Table A.3.  The torso and head
  are fixed; the hand yields 5 cm against its arm impedance, then is blocked (clamped).

Both are sampled at the control rate (50 Hz) from sensors (``framelinvel`` on the tool site,
``touch`` on a zone site per body region), so they run the same on every backend; a contact
transient shorter than one control period can be under-read.  They are a training objective
and an evaluation metric, not a safety function: a real cell needs a safety-rated speed and
force monitor outside the policy.

Observations (policy): joint positions and velocities, the handover point as a person tracker
reports it (``hand_pos``, m, world frame; noisy in simulation with randomization on) and the
last action.  Privileged: the tool position and velocity, cup-to-target vector, cup axis, the
hand's velocity and the contact force on each body region.  Actions: deltas of the six arm
joint targets (rad); the gripper keeps holding the cup.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import mujoco
import torch

from karakuri.robot.mjcf_index import dof_adr, followers
from karakuri.robot.spec import RobotSpec
from karakuri.sim.physics import Physics
from karakuri.sim.rewards import tolerance
from karakuri.sim.task import ActionMap, ObsTerm, Randomization, Task, TaskContext
from karakuri.sim.task_helpers import HomePose
from karakuri.sim.terms import robot_obs_terms

#: Body regions with a touch sensor, and their ISO/TS 15066:2016 Table A.2 quasi-static
#: maximum permissible forces, N (hands and fingers, lower arms and wrists, chest, face).
REGIONS: tuple[str, ...] = ("hand", "lower_arm", "chest", "face")
FORCE_LIMITS_N: tuple[float, ...] = (140.0, 160.0, 140.0, 65.0)
#: ISO 10218-1:2011 5.6 reduced speed, m/s; applied within ``ZONE_M`` of the hand.
SPEED_LIMIT = 0.25
ZONE_M = 0.3
HAND, CUP = "ho_hand", "ho_cup"
S_TOOL, S_TOOL_VEL, S_TARGET, S_PALM, S_CUP_AXIS = (
    "ho_tool_pos", "ho_tool_vel", "ho_target_pos", "ho_palm_pos", "ho_cup_axis")
#: The hand: ISO/TS 15066 Table A.3 effective mass of hands and fingers, kg; held by the
#: user's arm with an endpoint stiffness (N/m) and damping (N·s/m) of a relaxed human arm
#: (a few hundred N/m in arm-impedance measurements), over at most ARM_TRAVEL either way, m.
HAND_MASS, ARM_STIFFNESS, ARM_DAMPING, ARM_TRAVEL = 0.6, 300.0, 20.0, 0.05
HOLD_S = 0.5  # the funnel's "held": the cup upright at the handover point this long in a row, s
REF_MASS = 50.0  # the drift point's inertia, kg: contacts barely disturb the user's intent
SKIN, SHIRT = [0.87, 0.72, 0.6, 1.0], [0.35, 0.5, 0.62, 1.0]
PERSON = {"contype": 0, "conaffinity": 2}  # touched by arm links, fingers and cup (bit 2)


def default_randomization() -> Randomization:
    """Ranges used when training with ``--randomize``: masses, friction, gains, noise, latency."""
    return Randomization(friction=(0.7, 1.3), mass=(0.7, 1.4), actuator_gain=(0.9, 1.1),
                         joint_damping=(0.8, 1.25), obs_noise=1.0, action_latency_steps=1)


@dataclass(frozen=True)
class HandoverConfig:
    """Handover settings (lengths in m, world frame).

    Attributes:
        ctrl_dt: Control period, s.
        episode_s: Episode length, s.
        hand_rest: The point the hand's springs pull it to (palm centre).
        hand_amplitude: Largest drift amplitude of the hand per axis.
        hand_periods: Spring periods per axis, s.
        target_offset: Handover point relative to the palm centre (the cup's centre there).
        success_radius: Cup-to-handover-point distance counted as success.
        max_tilt: Largest cup tilt from upright counted as success, rad.
        grip: Gripper opening holding the cup, m.
        action_scale: Arm joint target lead per unit action, rad (the servo turns a 0.04 rad
            lead into ~0.6 rad/s: half the arm's rated speed, as befits a care setting).
        init_noise: Half-width of the uniform noise on the initial arm pose, rad.
        hand_noise: Std of the simulated tracker noise on ``hand_pos``, m.
        violation_penalty: Reward scale of the step that ends an episode by a violation.
        force_limits: Largest contact force per body region of ``REGIONS``, N.
        randomize: Domain randomization ranges.
    """

    ctrl_dt: float = 0.02
    episode_s: float = 5.0
    hand_rest: tuple[float, float, float] = (0.48, 0.20, 0.88)
    hand_amplitude: tuple[float, float, float] = (0.05, 0.05, 0.04)
    hand_periods: tuple[float, float, float] = (7.0, 9.0, 11.0)
    target_offset: tuple[float, float, float] = (0.0, 0.0, 0.09)
    success_radius: float = 0.04
    max_tilt: float = 0.35
    grip: float = 0.033
    action_scale: float = 0.04
    init_noise: float = 0.03
    hand_noise: float = 0.01
    violation_penalty: float = 50.0
    force_limits: tuple[float, ...] = FORCE_LIMITS_N
    randomize: Randomization = field(default_factory=default_randomization)

    def __post_init__(self) -> None:
        if min(self.hand_periods) <= 0 or min(self.success_radius, self.action_scale) <= 0:
            raise ValueError("hand_periods, success_radius and action_scale must be > 0")
        if len(self.force_limits) != len(REGIONS) or min(self.force_limits) <= 0:
            raise ValueError(f"force_limits {self.force_limits} needs one value > 0 N per region "
                             f"{REGIONS}")
        if any(a < 0 or a > 0.12 for a in self.hand_amplitude):
            raise ValueError(f"hand_amplitude {self.hand_amplitude} must be in [0, 0.12] m")


class Handover(Task):
    """The handover task (see module docstring)."""

    name = "handover"
    extra_signals: ClassVar[dict[str, int]] = {"hand_pos": 3}
    #: The funnel (docs/tasks.md): tool in the reduced-speed zone around the hand, cup at the
    #: handover point, and upright there, and held there upright for HOLD_S.
    stages: ClassVar[tuple[str, ...]] = ("approached", "at_hand", "upright", "held")

    def __init__(self, robot: RobotSpec, config: HandoverConfig | None = None) -> None:
        self.cfg = config or HandoverConfig()
        super().__init__(robot, self.cfg.ctrl_dt, self.cfg.episode_s)
        if not robot.tool_site or len(robot.gripper_joints) != 1:
            raise ValueError(f"handover needs a tool site and one gripper joint; robot "
                             f"{robot.name!r} has tool_site={robot.tool_site!r}, "
                             f"gripper_joints={list(robot.gripper_joints)}")

    # -- declaration --------------------------------------------------------------------
    @property
    def obs_terms(self) -> list[ObsTerm]:
        """Robot and tracker signals, then privileged state for the critic."""
        return [
            *robot_obs_terms(self.robot, ObsTerm("hand_pos", "hand_pos", scale=5.0,
                                                 offset=self._target_rest(),
                                                 noise=self.cfg.hand_noise)),
            ObsTerm("tool_pos", "tool_pos", privileged=True),
            ObsTerm("tool_vel", "tool_vel", scale=2.0, privileged=True),
            ObsTerm("cup_to_target", "cup_to_target", scale=5.0, privileged=True),
            ObsTerm("cup_axis", "cup_axis", privileged=True),
            ObsTerm("hand_vel", "hand_vel", scale=10.0, privileged=True),
            ObsTerm("person_force", "person_force", scale=0.02, privileged=True),
        ]

    def _target_rest(self) -> tuple[float, ...]:
        """The handover point when the hand is at rest, m, world frame."""
        return tuple(r + o for r, o in zip(self.cfg.hand_rest, self.cfg.target_offset,
                                           strict=True))

    @property
    def reward_scales(self) -> dict[str, float]:
        """Approach and hold; keep the cup upright; slow near the person; never hurt."""
        return {"approach": 2.0, "hold": 4.0, "upright": 1.0, "zone_speed": -2.0,
                "contact": -1.0, "violation": -self.cfg.violation_penalty,
                "action_rate": -0.05, "joint_vel": -0.005}

    @property
    def action_map(self) -> ActionMap:
        """Deltas on the six arm joints; the gripper is held closed on the cup."""
        r = self.robot
        return ActionMap.for_robot(r, "joint_position_delta", self.cfg.action_scale,
                                   joints=r.arm_joints, hold={r.gripper_joints[0]: self.cfg.grip})

    @property
    def randomization(self) -> Randomization:
        """As configured (used when the env is built with ``randomize=True``)."""
        return self.cfg.randomize

    # -- scene ---------------------------------------------------------------------------
    def build_scene(self, spec: mujoco.MjSpec) -> None:
        """Add the person (torso, head, spring-mounted hand), the held cup and sensors."""
        box, sph, cap = (mujoco.mjtGeom.mjGEOM_BOX, mujoco.mjtGeom.mjGEOM_SPHERE,
                         mujoco.mjtGeom.mjGEOM_CAPSULE)
        w = spec.worldbody
        torso = w.add_body(name="ho_torso", pos=[-0.08, 0.40, 0.80])
        torso.add_geom(type=cap, size=[0.14, 0.22, 0], rgba=SHIRT, **PERSON)
        torso.add_site(name="chest_zone", type=box, size=[0.16, 0.16, 0.38], group=4)
        head = w.add_body(name="ho_head", pos=[-0.08, 0.40, 1.28])
        head.add_geom(type=sph, size=[0.1, 0, 0], rgba=SKIN, **PERSON)
        head.add_site(name="face_zone", type=sph, size=[0.115, 0, 0], group=4)
        self._add_hand(w)
        tool = spec.site(self.robot.tool_site)
        cup = tool.parent.add_body(name=CUP, pos=list(tool.pos), quat=[0.7071068, -0.7071068, 0, 0],
                                   gravcomp=1.0)
        cup.add_geom(type=mujoco.mjtGeom.mjGEOM_CYLINDER, size=[0.035, 0.05, 0], mass=0.25,
                     contype=2, conaffinity=0, rgba=[0.95, 0.95, 0.92, 1.0])
        cup.add_site(name="ho_cup_center")
        sensors = [(S_TOOL, "FRAMEPOS", "SITE", self.robot.tool_site),
                   (S_TOOL_VEL, "FRAMELINVEL", "SITE", self.robot.tool_site),
                   (S_TARGET, "FRAMEPOS", "SITE", "ho_target"),
                   (S_PALM, "FRAMEPOS", "SITE", "ho_palm"),
                   (S_CUP_AXIS, "FRAMEZAXIS", "BODY", CUP)]
        sensors += [(f"ho_force_{r}", "TOUCH", "SITE", f"{r}_zone") for r in REGIONS]
        for name, kind, obj, objname in sensors:
            spec.add_sensor(name=name, type=getattr(mujoco.mjtSensor, f"mjSENS_{kind}"),
                            objtype=getattr(mujoco.mjtObj, f"mjOBJ_{obj}"), objname=objname)

    def _add_hand(self, world: mujoco.MjsBody) -> None:
        """The user's hand: a drift point on weak springs, the hand held to it by arm impedance.

        ``ho_hand_ref`` (no geometry, ``REF_MASS``) swings freely on weak springs about
        ``hand_rest``: the user's slow, voluntary drift.  The 0.6 kg hand hangs on it by stiff
        slide joints (``ARM_STIFFNESS``, ``ARM_DAMPING``, at most ``ARM_TRAVEL`` either way),
        so a push moves the hand a little and the user's arm pushes back; at the end of that
        travel the hand is blocked, as a clamped hand would be.
        """
        box, cap, slide = (mujoco.mjtGeom.mjGEOM_BOX, mujoco.mjtGeom.mjGEOM_CAPSULE,
                           mujoco.mjtJoint.mjJNT_SLIDE)
        ref = world.add_body(name=f"{HAND}_ref", pos=list(self.cfg.hand_rest), gravcomp=1.0,
                             mass=REF_MASS, inertia=[1.0, 1.0, 1.0])
        hand = ref.add_body(name=HAND, gravcomp=1.0)
        for i, (axis, period) in enumerate(zip(((1, 0, 0), (0, 1, 0), (0, 0, 1)),
                                               self.cfg.hand_periods, strict=True)):
            k = (REF_MASS + HAND_MASS) * (2 * math.pi / period) ** 2  # N/m
            ref.add_joint(name=f"{HAND}_ref_{'xyz'[i]}", type=slide, axis=list(axis),
                          stiffness=k, range=[-0.15, 0.15], limited=1)
            hand.add_joint(name=f"{HAND}_{'xyz'[i]}", type=slide, axis=list(axis),
                           stiffness=ARM_STIFFNESS, damping=ARM_DAMPING,
                           range=[-ARM_TRAVEL, ARM_TRAVEL], limited=1)
        hand.add_geom(type=box, size=[0.05, 0.042, 0.012], mass=0.47, rgba=SKIN, **PERSON)
        hand.add_geom(type=cap, fromto=[-0.06, 0.0, -0.01, -0.3, 0.05, -0.1], size=[0.035, 0, 0],
                      mass=HAND_MASS - 0.47, rgba=SHIRT, **PERSON)  # lower arm, with the hand
        hand.add_site(name="hand_zone", type=box, size=[0.062, 0.055, 0.03], pos=[0, 0, 0.01],
                      group=4)
        hand.add_site(name="lower_arm_zone", type=box, size=[0.13, 0.06, 0.07],
                      pos=[-0.18, 0.025, -0.055], group=4)
        hand.add_site(name="ho_palm", size=[0.005, 0, 0], group=4)
        hand.add_site(name="ho_target", pos=list(self.cfg.target_offset), size=[0.01, 0, 0],
                      rgba=[0.1, 0.8, 0.2, 0.5], group=1)

    def bind(self, ctx: TaskContext) -> None:
        """Resolve sensors and joints; allocate per-world buffers."""
        m, dev, n, sens = ctx.model, ctx.device, ctx.num_worlds, ctx.sensor
        self._tool, self._vel = sens(S_TOOL), sens(S_TOOL_VEL)
        self._target, self._palm, self._axis = sens(S_TARGET), sens(S_PALM), sens(S_CUP_AXIS)
        self._force = [sens(f"ho_force_{r}").start for r in REGIONS]
        self._limits = torch.tensor(self.cfg.force_limits, device=dev)
        rj = [m.joint(f"{HAND}_ref_{a}") for a in "xyz"]
        hj = [m.joint(f"{HAND}_{a}") for a in "xyz"]
        self._ref_q = torch.tensor([int(j.qposadr[0]) for j in rj], device=dev)
        self._ref_d = torch.tensor([int(j.dofadr[0]) for j in rj], device=dev)
        self._hand_q = torch.tensor([int(j.qposadr[0]) for j in hj], device=dev)
        self._hand_d = torch.tensor([int(j.dofadr[0]) for j in hj], device=dev)
        mass = float(m.body_subtreemass[m.body(f"{HAND}_ref").id])
        self._omega = torch.tensor([math.sqrt(float(m.jnt_stiffness[j.id]) / mass) for j in rj],
                                   device=dev)
        self._arm_dadr = torch.tensor(dof_adr(m, self.robot.arm_joints), device=dev)
        grip = m.joint(self.robot.gripper_joints[0])
        self._mirror = torch.tensor(
            [int(m.jnt_qposadr[f]) for f in followers(m, grip.id)],
            dtype=torch.long, device=dev)
        home = [*self.robot.default_pose[: self.robot.n_arm].tolist(), self.cfg.grip]
        self._home = HomePose.bind(m, self.robot, dev, self.cfg.init_noise, home)
        self._amp = torch.tensor(self.cfg.hand_amplitude, device=dev)
        self._gen, self._dev = ctx.generator, dev
        self.peak_speed = torch.zeros(n, device=dev)
        self.peak_force = torch.zeros(n, device=dev)
        self.violated = torch.zeros(n, dtype=torch.bool, device=dev)
        self.held_steps = torch.zeros(n, dtype=torch.long, device=dev)
        self._hold_steps = max(1, round(HOLD_S / self.ctrl_dt))

    # -- episodes ------------------------------------------------------------------------
    def reset_worlds(
        self, mask: torch.Tensor, physics: Physics
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Noisy home pose holding the cup; a new hand drift (amplitude, phase) per axis."""
        n, dev, g = physics.num_worlds, self._dev, self._gen
        qpos, _ = self._home.sample(n, g)
        qvel = torch.zeros(n, physics.qvel.shape[1], device=dev)
        qpos[:, self._mirror] = self.cfg.grip
        u = torch.rand(n, 6, device=dev, generator=g)
        amp, phase = self._amp * u[:, :3], 2 * math.pi * u[:, 3:]
        qpos[:, self._ref_q] = amp * torch.sin(phase)
        qvel[:, self._ref_d] = amp * self._omega * torch.cos(phase)
        return qpos, qvel

    def after_reset(self, mask: torch.Tensor, physics: Physics) -> None:
        """Clear the episode monitors of the worlds that start a new episode."""
        # masked_fill_, not buf[mask] = 0: boolean indexing would wait for the GPU
        self.peak_speed.masked_fill_(mask, 0.0)
        self.peak_force.masked_fill_(mask, 0.0)
        self.violated.masked_fill_(mask, False)
        self.held_steps.masked_fill_(mask, 0)

    def after_step(self, physics: Physics) -> None:
        """Update the episode monitors: peak zone speed and force, violation, hold time."""
        s = self._state(physics)
        self.peak_speed = torch.maximum(self.peak_speed, s["speed"] * s["in_zone"])
        self.peak_force = torch.maximum(self.peak_force, s["force"].amax(dim=-1))
        self.violated |= s["violation"]
        held = self._delivered(s)
        self.held_steps = torch.where(held, self.held_steps + 1, torch.zeros_like(self.held_steps))

    # -- state ---------------------------------------------------------------------------
    def _state(self, physics: Physics) -> dict[str, torch.Tensor]:
        sd = physics.sensordata
        tool, target = sd[:, self._tool], sd[:, self._target]
        speed = torch.linalg.norm(sd[:, self._vel], dim=-1)
        in_zone = torch.linalg.norm(tool - sd[:, self._palm], dim=-1) < ZONE_M
        force = sd[:, self._force]
        tilt = torch.acos(sd[:, self._axis][:, 2].clamp(-1.0, 1.0))
        violation = (in_zone & (speed > SPEED_LIMIT)) | (force > self._limits).any(dim=-1)
        return {"tool": tool, "target": target, "speed": speed, "in_zone": in_zone,
                "force": force, "tilt": tilt, "violation": violation,
                "distance": torch.linalg.norm(target - tool, dim=-1)}

    def signals(self, physics: Physics) -> dict[str, torch.Tensor]:
        """``hand_pos`` (tracker) and privileged tool, cup, hand and contact state."""
        sd = physics.sensordata
        tool = sd[:, self._tool]
        hand_vel = physics.qvel[:, self._ref_d] + physics.qvel[:, self._hand_d]
        return {"hand_pos": sd[:, self._target], "tool_pos": tool, "tool_vel": sd[:, self._vel],
                "cup_to_target": sd[:, self._target] - tool, "cup_axis": sd[:, self._axis],
                "hand_vel": hand_vel, "person_force": sd[:, self._force]}

    def reward_terms(
        self, physics: Physics, action: torch.Tensor, last_action: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Distance shaping, uprightness, soft speed and contact penalties, the violation."""
        s = self._state(physics)
        d, speed = s["distance"], s["speed"]
        near_zone = torch.linalg.norm(s["tool"] - s["target"], dim=-1) < ZONE_M + 0.1
        excess = torch.relu(speed - 0.7 * SPEED_LIMIT) / (0.3 * SPEED_LIMIT)
        return {
            "approach": 1 - torch.tanh(d / 0.3),
            "hold": tolerance(d, margin=0.05, bounds=(0.0, self.cfg.success_radius / 2)),
            "upright": tolerance(s["tilt"], margin=0.25, bounds=(0.0, 0.05)),
            "zone_speed": near_zone * excess.clamp(max=2.0),
            "contact": (s["force"] / self._limits).sum(dim=-1),
            "violation": s["violation"].float(),
            "action_rate": torch.sum((action - last_action) ** 2, dim=-1),
            "joint_vel": torch.sum(physics.qvel[:, self._arm_dadr] ** 2, dim=-1),
        }

    def _delivered(self, s: dict[str, torch.Tensor]) -> torch.Tensor:
        """Cup at the handover point and upright (the success pose), (N,) bool."""
        return (s["distance"] < self.cfg.success_radius) & (s["tilt"] < self.cfg.max_tilt)

    def stage_flags(self, physics: Physics) -> torch.Tensor:
        """The :attr:`stages` each world satisfies now. Shape: (N, 4) bool."""
        s = self._state(physics)
        at_hand = s["distance"] < self.cfg.success_radius
        return torch.stack([s["in_zone"], at_hand, self._delivered(s),
                            self.held_steps >= self._hold_steps], dim=-1)

    def terminated(self, physics: Physics) -> torch.Tensor:
        """A speed or force violation ends the episode."""
        return self._state(physics)["violation"]

    def success(self, physics: Physics) -> torch.Tensor:
        """Cup at the handover point, upright, and no violation in this episode."""
        s = self._state(physics)
        return self._delivered(s) & ~s["violation"] & ~self.violated

    def metrics(self, physics: Physics) -> dict[str, torch.Tensor]:
        """Per-world episode metrics, each (N,).

        Peak tool speed in the zone (m/s), peak contact force (N), violation (0/1), final
        cup-to-target distance (m) and cup tilt from upright (rad).
        """
        s = self._state(physics)
        return {"peak_zone_speed": self.peak_speed.clone(),
                "peak_contact_force": self.peak_force.clone(),
                "violation": (self.violated | s["violation"]).float(),
                "final_distance": s["distance"], "final_tilt": s["tilt"]}
