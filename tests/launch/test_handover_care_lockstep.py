"""Care safety against the handover scene in lock-step: no link, no wall clock.

The unsafe file's target (see ``test_handover_care_sil.py``) goes through the real safety
filter and care stage into the handover scene, 10 physics steps a tick: with the layers the
tool stays under 0.25 m/s within 0.3 m of the palm, without them it does not.  A push of the
hand into the held cup makes a protective stop at most two ticks after the net contact force
on the hand first exceeds the limit.
"""

from __future__ import annotations

import numpy as np
import pytest

mujoco = pytest.importorskip("mujoco")
pytest.importorskip("onnx")

from test_handover_care_sil import (  # noqa: E402
    BESIDE,
    LAUNCH,
    SPEC,
    THROUGH,
    net_contact_force,
    tool_at,
)

from karakuri.launch.schema import load_launch  # noqa: E402


def handover_scene(seed: int) -> tuple:
    """The handover scene at the home pose, laid out for ``seed``.

    Returns:
        (model, data, qpos addresses, dof addresses, actuator ids), the last three in the
        robot's command order (``robot.mjcf_index``).
    """
    from karakuri.robot.mjcf_index import JointIndex
    from karakuri.sim.scene_plant import ScenePlant

    scene = ScenePlant("handover", SPEC, seed=seed)
    m = scene.model
    d = mujoco.MjData(m)
    ix = JointIndex.build(m, SPEC.joint_names)
    d.qpos[ix.qpos] = d.ctrl[ix.act] = SPEC.default_pose
    scene.layout(m, d)
    return m, d, ix.qpos, ix.dof, ix.act


def lockstep(seed: int, care: bool, ticks: int = 250) -> tuple[float, float]:
    """The unsafe file's target through the real filter (and care stage) into the handover
    scene, stepped in lock-step (10 physics steps a tick, no link, no wall clock).

    Returns:
        Peak tool speed within 0.3 m of the palm (m/s, every physics step) and peak contact
        force on the hand or lower arm (N).
    """
    from karakuri.launch.care import PlantPerson
    from karakuri.robot.care_safety import CareConfig, CareSafety
    from karakuri.robot.safety import SafetyFilter, SafetyLimits

    m, d, qadr, dadr, act = handover_scene(seed)
    tool, palm = m.site(SPEC.tool_site).id, m.site("ho_palm").id
    vel = int(m.sensor("ho_tool_vel").adr[0])
    force = [int(m.sensor(f"ho_force_{r}").adr[0]) for r in ("hand", "lower_arm")]
    limits = SafetyLimits.from_spec(SPEC)
    safety = SafetyFilter(limits, 0.02, 0.5)
    safety.reset(SPEC.default_pose)
    clock = [0.0]
    if care:
        section = load_launch(LAUNCH).care
        person = PlantPerson(type("Plant", (), {"plant_call": lambda self, fn: fn(m, d)})(),
                             "ho_palm", section.person.noise, seed)
        person.read = (lambda read: lambda: (read()[0], clock[0]))(person.read)

        class State:
            def __init__(self) -> None:
                self.position, self.velocity = d.qpos[qadr].copy(), d.qvel[dadr].copy()
                self.effort, self.stamp = d.actuator_force[act].copy(), clock[0]

        safety.add_stage(CareSafety(SPEC.kinematics, 0.02,
                                    CareConfig(section.separation, section.force_limit),
                                    limits.lower, limits.upper, person=person, state=State,
                                    clock=lambda: clock[0]))
    goal, peak, peak_force = tool_at(THROUGH), 0.0, 0.0
    for k in range(ticks):
        clock[0] = 0.02 * k
        d.ctrl[act] = safety.filter(goal)
        for _ in range(10):
            mujoco.mj_step(m, d)
            if np.linalg.norm(d.site_xpos[tool] - d.site_xpos[palm]) < 0.3:
                peak = max(peak, float(np.linalg.norm(d.sensordata[vel:vel + 3])))
            peak_force = max(peak_force, *(float(d.sensordata[i]) for i in force))
    assert not safety.latched, safety.fault
    return peak, peak_force


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_unsafe_policy_lockstep_with_and_without_care(seed: int) -> None:
    peak, force = lockstep(seed, care=True)
    peak_off, force_off = lockstep(seed, care=False)
    assert peak <= 0.25 < peak_off, (peak, peak_off)
    assert force < force_off, (force, force_off)


def test_push_lockstep_stops_within_two_periods() -> None:
    """The same push in lock-step (no link, no wall clock): the stop comes at most two ticks
    after the first tick whose plant state has the net hand force over the limit, and the
    estimate tracks that force (the robot's side of it) within 20 N + 25 % before the stop."""
    from karakuri.robot.care_safety import CareConfig, CareSafety
    from karakuri.robot.force_limit import ForceLimitConfig
    from karakuri.robot.safety import SafetyFilter, SafetyLimits

    m, d, qadr, dadr, act = handover_scene(0)
    hand, tool = m.body("ho_hand").id, m.site(SPEC.tool_site).id
    limits = SafetyLimits.from_spec(SPEC)
    safety = SafetyFilter(limits, 0.02, 0.5)
    safety.reset(SPEC.default_pose)
    clock = [0.0]

    class State:
        def __init__(self) -> None:
            self.position, self.velocity = d.qpos[qadr].copy(), d.qvel[dadr].copy()
            self.effort, self.stamp = d.actuator_force[act].copy(), clock[0]

    care = CareSafety(SPEC.kinematics, 0.02, CareConfig(None, ForceLimitConfig(scale=0.3)),
                      limits.lower, limits.upper, state=State, clock=lambda: clock[0])
    safety.add_stage(care)
    goal, over_at, stop_at = tool_at(BESIDE), None, None
    for k in range(200):
        clock[0] = 0.02 * k
        net = float(np.linalg.norm(net_contact_force(m, d, hand)))
        over_at = k if over_at is None and net > 42.0 else over_at
        d.ctrl[act] = safety.filter(goal)
        if care.stopped:
            stop_at = k
            break
        assert care.force_n <= 20.0 + 1.25 * net, (k, care.force_n, net)
        for _ in range(10):
            if k >= 100:  # the push: 300 N/s up to 120 N, on the hand toward the tool
                to_tool = d.site_xpos[tool] - d.xpos[hand]
                d.xfrc_applied[hand, :3] = (min(300.0 * 0.02 * (k - 100), 120.0) * to_tool
                                            / np.linalg.norm(to_tool))
            mujoco.mj_step(m, d)
    assert over_at is not None and stop_at is not None, (over_at, stop_at)
    assert stop_at - over_at <= 2, (over_at, stop_at)
