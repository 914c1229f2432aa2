"""Finding 7 of issue 11: each user mistake is one clear line and exit 2, never a traceback.

Every case runs through the real CLI (``karakuri.launch.cli.main``).  Launch-file mistakes
must be refused before the link opens, so before the robot could be armed: the virtual MCU
that ``link: {kind: sil}`` would start is watched and must never start.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

onnx = pytest.importorskip("onnx")
pytest.importorskip("mujoco")

from trust_helpers import hold_policy  # noqa: E402

from karakuri.launch import schema_links  # noqa: E402
from karakuri.launch.cli import USAGE_ERROR, main  # noqa: E402
from karakuri.robot.registry import load_robot  # noqa: E402

IN_BOX = [0.45, 0.1, 0.3]  # inside reach's target box, m


@pytest.fixture(scope="module")
def policy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return hold_policy(tmp_path_factory.mktemp("policy") / "policy.onnx")


@pytest.fixture()
def mcu_starts(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[object]:
    """Records each virtual MCU deploy would start (none may start on a refused file)."""
    started: list[object] = []
    monkeypatch.setattr(schema_links, "virtual_mcu", lambda *a, **k: started.append(a) or 1 / 0)
    monkeypatch.setenv("KARAKURI_AUDIT_LOG", str(tmp_path / "audit.jsonl"))
    return started


def write_launch(tmp_path: Path, policy: Path, **kw: object) -> Path:
    data: dict[str, object] = {
        "robot": "industrial_arm", "policy": str(policy), "link": {"kind": "sil"},
        "command": {"targets": [IN_BOX], "hold_s": 0.2, "reset_s": 0.0}}
    data.update(kw)
    path = tmp_path / "launch.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def one_error(capsys: pytest.CaptureFixture[str], command: str) -> str:
    """The command's single error line (stderr), checked to be one line and no traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith(f"karakuri {command}:")]
    assert len(lines) == 1, err
    return lines[0]


def refused_deploy(path: Path, capsys: pytest.CaptureFixture[str], started: list) -> str:
    assert main(["deploy", str(path)]) == USAGE_ERROR
    assert started == [], "the link was opened for a launch file that had to be refused"
    return one_error(capsys, "deploy")


# ----------------------------------------------------------------------------- deploy
def test_launch_path_that_is_a_directory(tmp_path: Path, capsys, mcu_starts) -> None:
    line = refused_deploy(tmp_path, capsys, mcu_starts)
    assert "is a directory" in line and str(tmp_path) in line


def test_launch_path_that_is_a_directory_in_a_subprocess(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "karakuri.launch.cli", "deploy", str(tmp_path)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == USAGE_ERROR
    assert r.stderr.strip().splitlines() == [
        f"karakuri deploy: launch file {tmp_path} is a directory; give a launch file (.yaml), "
        f"e.g. launch/reach_sil.yaml"]


@pytest.mark.parametrize("where", ["under_a_file", "a_directory"])
def test_unwritable_telemetry_path(tmp_path: Path, policy: Path, capsys, mcu_starts,
                                   where: str) -> None:
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    telemetry = tmp_path / ("afile/t.mcap" if where == "under_a_file" else "adir")
    line = refused_deploy(write_launch(tmp_path, policy, telemetry=str(telemetry)), capsys,
                          mcu_starts)
    assert "telemetry:" in line and str(telemetry) in line
    assert ("is a file, not a folder" if where == "under_a_file" else "is a directory") in line


def test_stale_fault_s_below_stale_periods_is_refused_with_the_rule(
        tmp_path: Path, policy: Path, capsys, mcu_starts) -> None:
    path = write_launch(tmp_path, policy, loop={"stale_fault_s": 0.05})  # 3 / 50 Hz = 0.06 s
    line = refused_deploy(path, capsys, mcu_starts)
    assert "loop.stale_fault_s: 0.05 s is too small" in line
    assert "stale_periods / rate = 3 / 50 Hz = 0.06 s" in line


def test_stale_fault_s_with_a_launch_rate_is_refused_at_load(tmp_path: Path, policy: Path,
                                                             capsys, mcu_starts) -> None:
    path = write_launch(tmp_path, policy, rate_hz=50.0, loop={"stale_fault_s": 0.01})
    assert "loop.stale_fault_s: 0.01 s is too small" in refused_deploy(path, capsys, mcu_starts)


@pytest.mark.parametrize("value", [-0.1, 0.0])
def test_non_positive_stale_fault_s(tmp_path: Path, policy: Path, capsys, mcu_starts,
                                    value: float) -> None:
    path = write_launch(tmp_path, policy, loop={"stale_fault_s": value})
    assert "stale_fault_s" in refused_deploy(path, capsys, mcu_starts)


@pytest.mark.parametrize(("target", "says"), [
    ("[.nan, 0.1, 0.3]", "not a finite number"),
    ("[.inf, 0.1, 0.3]", "not a finite number"),
    ("[-.inf, 0.1, 0.3]", "not a finite number"),
    ("[2, 2, 2]", "outside the target box of the reach task"),
    ("[0.45, 0.1]", "has 2 values; the policy's command input takes 3"),
    ("[0.45, 0.1, 0.3, 0.0]", "has 4 values; the policy's command input takes 3"),
])
def test_bad_targets_are_refused(tmp_path: Path, policy: Path, capsys, mcu_starts,
                                 target: str, says: str) -> None:
    path = tmp_path / "launch.yaml"
    path.write_text(f"robot: industrial_arm\npolicy: {policy}\nlink: {{kind: sil}}\n"
                    f"command:\n  targets: [{target}]\n  hold_s: 0.2\n")
    line = refused_deploy(path, capsys, mcu_starts)
    assert "targets[0]" in line and says in line


def test_a_box_reaching_outside_the_task_box_is_refused(tmp_path: Path, policy: Path, capsys,
                                                        mcu_starts) -> None:
    box = {"lower": [0.3, -0.1, 0.15], "upper": [2.0, 0.4, 0.45], "count": 3}
    path = write_launch(tmp_path, policy, command={"box": box, "hold_s": 0.2})
    assert "command.box.upper" in refused_deploy(path, capsys, mcu_starts)


def test_a_good_launch_file_passes_preflight(tmp_path: Path, policy: Path) -> None:
    from karakuri.launch.deploy import load_policy
    from karakuri.launch.preflight import preflight
    from karakuri.launch.schema import load_launch

    cfg = load_launch(write_launch(tmp_path, policy, telemetry=str(tmp_path / "new/t.mcap")))
    preflight(cfg, load_policy(cfg))
    assert (tmp_path / "new").is_dir() and not (tmp_path / "new/t.mcap").exists()


def test_arm_reach_bounds_every_pose() -> None:
    from karakuri.launch.preflight import arm_reach_m

    spec = load_robot("industrial_arm")
    reach = arm_reach_m(spec)
    rng = np.random.default_rng(0)
    far = max(float(np.linalg.norm(spec.kinematics.tool_position(rng.uniform(spec.lower,
                                                                             spec.upper))))
              for _ in range(500))
    assert far <= reach < np.linalg.norm([2, 2, 2])


# ----------------------------------------------------------------------------- export, eval
@pytest.fixture()
def run_dir(tmp_path: Path) -> Path:
    """Enough of a run for the CLI to accept it as one (its output checks come first)."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"config": {"task": "reach"}}))
    return run


@pytest.mark.parametrize("where", ["a_directory", "under_a_file"])
def test_export_output_that_cannot_be_a_file(tmp_path: Path, run_dir: Path, capsys,
                                             where: str) -> None:
    (tmp_path / "afile").write_text("x")
    out = tmp_path if where == "a_directory" else tmp_path / "afile" / "p.onnx"
    assert main(["export", str(run_dir), "-o", str(out)]) == USAGE_ERROR
    line = one_error(capsys, "export")
    assert str(out) in line
    assert ("is a directory" if where == "a_directory" else "is a file, not a folder") in line
    assert (tmp_path / "afile").read_text() == "x"


def test_eval_video_path_is_checked_before_the_evaluation(
        tmp_path: Path, policy: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    import karakuri.policies.evaluate as ev

    monkeypatch.setattr(ev, "evaluate_source", lambda *a, **k: pytest.fail("evaluated first"))
    (tmp_path / "afile").write_text("x")
    for video, says in [(tmp_path / "afile" / "v.mp4", "is a file, not a folder"),
                        (tmp_path, "is a directory"),
                        (tmp_path / "v.txt", "expected a .mp4 file")]:
        assert main(["eval", str(policy), "--video", str(video)]) == USAGE_ERROR
        assert says in one_error(capsys, "eval")


@pytest.mark.parametrize("what", ["garbage", "empty", "directory", "missing"])
def test_bench_inference_on_a_bad_file(tmp_path: Path, capsys, what: str) -> None:
    path = tmp_path / "p.onnx"
    if what == "garbage":
        path.write_bytes(b"not an onnx file at all")
    elif what == "empty":
        path.write_bytes(b"")
    elif what == "directory":
        path.mkdir()
    assert main(["bench", "inference", str(path), "--no-torch"]) == USAGE_ERROR
    assert str(path) in one_error(capsys, "bench inference")


# ----------------------------------------------------------------------------- train
@pytest.mark.parametrize("args", [["--net", "0"], ["--net", "64", "-1"], ["--robot", "nosuch"]])
def test_train_refuses_before_making_a_run_directory(tmp_path: Path, capsys,
                                                     args: list[str]) -> None:
    run = tmp_path / "run"
    assert main(["train", "reach", "--run-dir", str(run), "--num-envs", "4",
                 "--total-steps", "64", "--no-progress", *args]) == USAGE_ERROR
    line = one_error(capsys, "train")
    assert ("net must be" in line) if args[0] == "--net" else ("unknown robot 'nosuch'" in line)
    assert not run.exists()
