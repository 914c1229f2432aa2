"""CLI smoke runs of the foundation commands with tiny budgets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from karakuri.launch.cli import main


def test_robot_show_prints_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["robot", "show", "industrial_arm"]) == 0
    out = capsys.readouterr().out
    assert "shoulder_pan" in out and "finger_left" in out and "gripper" in out
    assert "150.0" in out  # effort limit of the big joints, N*m


def test_robot_show_json_round_trips(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["robot", "show", "industrial_arm", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tool_site"] == "tool"


def test_robot_show_unknown_name_lists_valid_ones(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["robot", "show", "ur99"]) == 2
    assert "unknown robot 'ur99'" in capsys.readouterr().out


def test_train_unknown_task_lists_valid_ones(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "juggle"]) == 2
    assert "valid tasks: [" in capsys.readouterr().err


def test_train_bad_value_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "reach", "--num-envs", "0"]) == 2
    assert "num_envs must be >= 1" in capsys.readouterr().err


def test_resume_of_a_non_run_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "reach", "--resume", str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err


def test_train_eval_export_and_video_tiny(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert main(["train", "reach", "--run-dir", str(run), "--num-envs", "8", "--total-steps", "512",
                 "--eval-episodes", "4", "--net", "16", "16", "--no-progress"]) == 0
    assert "evaluated success" in capsys.readouterr().out
    assert main(["export", str(run), "-o", str(run / "p.onnx")]) == 0
    assert "onnxruntime vs torch" in capsys.readouterr().out
    video = tmp_path / "v.mp4"
    assert main(["eval", str(run / "p.onnx"), "--episodes", "4", "--video", str(video),
                 "--video-episodes", "1"]) == 0
    assert video.stat().st_size > 10_000


def test_export_of_a_non_run_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(tmp_path), "-o", str(tmp_path / "p.onnx")]) == 2
    assert "not a training run" in capsys.readouterr().err
    assert not (tmp_path / "p.onnx").exists()
