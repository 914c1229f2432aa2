"""``karakuri robot check``: one verdict per item, and the sidecar key that fixes a failure."""

from __future__ import annotations

from pathlib import Path

import pytest
from own_robot_helpers import ARMS, write_arm

from karakuri.launch.cli import main
from karakuri.sim.robot_check import check_robot


def verdicts(path: str | Path) -> dict[str, tuple[str, str, str]]:
    _, items = check_robot(path)
    return {i.name: (i.verdict, i.detail, i.fix) for i in items}


def test_a_well_posed_arm_passes_every_item(tmp_path: Path) -> None:
    v = verdicts(write_arm(tmp_path))
    assert {k: x[0] for k, x in v.items()} == {
        "load": "ok", "servos": "ok", "gravity": "ok", "speed": "ok", "lead": "ok", "episode": "ok",
        "workspace": "ok", "gripper": "ok",
    }
    assert "gravity compensation: sidecar" in v["gravity"][1]


def test_sag_without_gravity_compensation_fails_naming_the_key(tmp_path: Path) -> None:
    v = verdicts(write_arm(tmp_path, gravity_compensation=False))
    verdict, detail, fix = v["gravity"]
    assert verdict == "fail" and "mm from home" in detail
    assert fix.startswith("gravity_compensation: true")


def test_too_large_action_scale_fails_the_speed_item(tmp_path: Path) -> None:
    v = verdicts(write_arm(tmp_path, tasks={"reach": {"action_scale": 0.5}}))
    assert v["speed"][0] == "fail" and "tasks.reach.action_scale" in v["speed"][2]


def test_a_lead_shorter_than_one_control_period_fails_naming_kd(tmp_path: Path) -> None:
    # kd 1 + joint damping 1 over kp 400: the lead is 0.25 control periods of the motion
    v = verdicts(write_arm(tmp_path, kd=[1.0, 40.0]))
    verdict, detail, fix = v["lead"]
    assert verdict == "fail" and "[0.25, 5.12]" in detail
    assert fix.startswith("kd (servo damping) for ['j1']")


def test_home_outside_a_sidecar_box_fails_the_workspace_item(tmp_path: Path) -> None:
    box = {"target_low": [0.0, 0.3, 0.3], "target_high": [0.1, 0.4, 0.4]}
    v = verdicts(write_arm(tmp_path, tasks={"reach": box}))
    verdict, detail, fix = v["workspace"]
    assert verdict == "fail" and "outside the target box" in detail
    assert "tasks.reach.target_low/target_high" in fix


def test_uncommanded_gripper_actuator_is_a_warning_with_the_key(tmp_path: Path) -> None:
    act = '<position name="g" joint="finger1" kp="100" kv="5" forcerange="-20 20"/>'
    v = verdicts(write_arm(tmp_path, actuators=act))
    assert v["gripper"][0] == "warn" and v["gripper"][2] == "gripper_joints: ['finger1']"


def test_a_load_error_is_one_failed_item_naming_the_key(tmp_path: Path) -> None:
    sc = write_arm(tmp_path)
    (tmp_path / "two_link.xml").write_text(
        (tmp_path / "two_link.xml").read_text().replace(' range="-3 3"', "")
    )
    v = verdicts(sc)
    assert list(v) == ["load"] and v["load"][0] == "fail"
    assert v["load"][2] == "position_limits"


def test_cli_exit_code_follows_the_verdicts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["robot", "check", str(write_arm(tmp_path))]) == 0
    assert "ready to train" in capsys.readouterr().out
    bad = tmp_path / "bad"
    bad.mkdir()
    assert main(["robot", "check", str(write_arm(bad, gravity_compensation=False))]) == 1
    out = capsys.readouterr().out
    assert "gravity    FAIL" in out and "fix: gravity_compensation: true" in out


def test_robot_show_states_gravity_compensation_and_aligns_long_names(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["robot", "show", str(ARMS["ur5e"])]) == 0
    out = capsys.readouterr().out
    assert "gravity compensation: on (added by the loader" in out
    rows = [ln for ln in out.splitlines() if ln[:2].strip().isdigit()]
    assert len({ln.index(" arm ") for ln in rows}) == 1  # one column for every joint name
