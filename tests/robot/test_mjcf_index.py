"""robot/mjcf_index.py: joint names to qpos, dof and actuator addresses, said once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

mujoco = pytest.importorskip("mujoco")

from own_robot_helpers import MIRROR, write_arm  # noqa: E402

from karakuri.robot import mjcf_index as mi  # noqa: E402
from karakuri.robot.registry import load_robot  # noqa: E402

# a joint with a position servo and, after it, a damper on the same joint
DAMPER = '<velocity name="d1" joint="j1" kv="3"/>'
FREE_BOX = """
<mujoco>
  <worldbody>
    <body name="box" pos="0 0 1"><freejoint name="box_free"/>
      <geom type="box" size="0.02 0.02 0.02" mass="0.1"/></body>
    <body name="ball_body"><joint name="swivel" type="ball"/>
      <geom type="sphere" size="0.02" mass="0.1"/>
      <body><joint name="hinge" axis="0 0 1"/><geom type="sphere" size="0.01" mass="0.1"/>
      </body></body>
  </worldbody>
  <actuator><motor name="m" joint="hinge"/></actuator>
</mujoco>
"""


def _arm(tmp_path: Path, **kw: object) -> mujoco.MjModel:
    return mujoco.MjModel.from_xml_path(str(write_arm(tmp_path, **kw).with_suffix(".xml")))


def test_constants_are_mujocos_enums() -> None:
    assert int(mujoco.mjtTrn.mjTRN_JOINT) == mi.TRN_JOINT
    assert int(mujoco.mjtEq.mjEQ_JOINT) == mi.EQ_JOINT


def test_index_agrees_with_mujocos_named_access_on_the_industrial_arm() -> None:
    spec = load_robot("industrial_arm")
    m = mujoco.MjModel.from_xml_path(spec.model_path)
    idx = mi.JointIndex.build(m, spec.joint_names)
    for i, name in enumerate(spec.joint_names):
        j = m.joint(name)
        assert idx.joint[i] == j.id
        assert idx.qpos[i] == j.qposadr[0] and idx.dof[i] == j.dofadr[0]
        assert m.actuator(int(idx.act[i])).trnid[0] == j.id
    np.testing.assert_array_equal(idx.qpos, mi.qpos_adr(m, spec.joint_names))
    np.testing.assert_array_equal(idx.dof, mi.dof_adr(m, spec.joint_names))
    np.testing.assert_array_equal(idx.act, mi.actuator_adr(m, spec.joint_names))


def test_a_joint_driven_by_two_actuators_is_driven_by_the_first(tmp_path: Path) -> None:
    m = _arm(tmp_path, actuators=DAMPER)
    j1 = m.joint("j1").id
    assert mi.joint_actuators(m, j1) == [m.actuator("a1").id, m.actuator("d1").id]
    assert mi.actuator_of(m, j1) == m.actuator("a1").id


def test_the_plant_drives_the_actuator_the_spec_reads_its_gains_from(tmp_path: Path) -> None:
    # the virtual MCU's plant used to take the LAST actuator of a joint (here the damper,
    # whose gain 3 would have passed its kp > 0 check) while training and the loader take
    # the first: the plant now asks the same index
    from karakuri.firmware_bridge.mujoco_plant import MujocoPlant

    spec = load_robot(write_arm(tmp_path, actuators=DAMPER))
    plant = MujocoPlant(spec)
    assert plant.model.actuator(int(plant.act[0])).name == "a1"
    np.testing.assert_allclose(plant.kp, spec.kp)
    np.testing.assert_allclose(plant.kp, [400.0, 400.0])
    target = spec.default_pose + np.array([0.2, -0.2])
    for _ in range(500):  # 1 s
        plant.step(target)
    np.testing.assert_allclose(plant.sample()[0], target, atol=5e-3)


def test_free_and_ball_joints_span_their_widths() -> None:
    m = mujoco.MjModel.from_xml_string(FREE_BOX)
    free, ball, hinge = (m.joint(n).id for n in ("box_free", "swivel", "hinge"))
    assert list(mi.qpos_span(m, free)) == list(range(0, 7))
    assert list(mi.dof_span(m, free)) == list(range(0, 6))
    assert list(mi.qpos_span(m, ball)) == list(range(7, 11))
    assert list(mi.dof_span(m, ball)) == list(range(6, 9))
    assert list(mi.qpos_span(m, hinge)) == [11] and list(mi.dof_span(m, hinge)) == [9]
    assert sum(len(mi.qpos_span(m, j)) for j in range(m.njnt)) == m.nq
    assert sum(len(mi.dof_span(m, j)) for j in range(m.njnt)) == m.nv


def test_followers_are_the_joints_an_equality_ties_to_a_driver(tmp_path: Path) -> None:
    m = _arm(tmp_path, extra=MIRROR)
    assert mi.followers(m, m.joint("finger1").id) == [m.joint("finger2").id]
    assert mi.followers(m, m.joint("finger2").id) == []
    m.eq_active0[0] = 0
    assert mi.followers(m, m.joint("finger1").id, active_only=True) == []
    assert mi.followers(m, m.joint("finger1").id) == [m.joint("finger2").id]


def test_unknown_joint_and_joint_without_actuator_name_what_is_wrong(tmp_path: Path) -> None:
    m = _arm(tmp_path)
    with pytest.raises(mi.MjcfIndexError, match=r"no joint named 'elbow'.*'j1', 'j2'"):
        mi.JointIndex.build(m, ["j1", "elbow"])
    with pytest.raises(mi.MjcfIndexError, match=r"joint 'finger1' has no actuator"):
        mi.JointIndex.build(m, ["j1", "finger1"])
    assert len(mi.qpos_adr(m, ["finger1"])) == 1  # addresses need no actuator


@settings(max_examples=30, deadline=None)
@given(st.permutations(["j1", "j2", "finger1"]))
def test_the_index_follows_the_order_it_is_asked_in(tmp_path_factory: pytest.TempPathFactory,
                                                    order: list[str]) -> None:
    m = _arm(tmp_path_factory.mktemp("arm"),
             actuators='<position name="g" joint="finger1" kp="100" kv="5"/>')
    idx = mi.JointIndex.build(m, order)
    for i, name in enumerate(order):
        assert m.joint(int(idx.joint[i])).name == name
        assert idx.qpos[i] == m.joint(name).qposadr[0]
        assert m.actuator(int(idx.act[i])).trnid[0] == m.joint(name).id


def test_training_and_the_plant_write_ctrl_to_the_same_actuator(tmp_path: Path) -> None:
    # the finding of issue 12: two call sites disagreed on a joint's first vs last actuator
    pytest.importorskip("torch")
    from karakuri.firmware_bridge.mujoco_plant import MujocoPlant
    from karakuri.sim.registry import make_env

    spec = load_robot(write_arm(tmp_path, actuators=DAMPER))
    env = make_env("reach", spec, num_worlds=1, seed=0, randomize=False)
    np.testing.assert_array_equal(env.ctrl_idx.numpy(), MujocoPlant(spec).act)
    assert env.model.actuator(int(env.ctrl_idx[0])).name == "a1"
