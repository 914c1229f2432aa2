"""eval, export, demo and train take their flags from dataclasses: same names and defaults."""

from __future__ import annotations

import dataclasses

import pytest

from karakuri.launch.cli import build_parser
from karakuri.launch.cli_config import dataclass_from_args
from karakuri.launch.commands.demo import DemoArgs
from karakuri.launch.commands.evaluate import EvalArgs
from karakuri.launch.commands.export import ExportArgs
from karakuri.policies.run_dir import EVAL_EPISODES, EVAL_SEED, TrainConfig


def parse(argv: list[str]):
    return build_parser(argv).parse_args(argv)


def subparser(name: str):
    """The ``karakuri NAME`` parser."""
    action = next(a for a in build_parser([name])._actions if a.dest == "command")
    return action.choices[name]  # type: ignore[index]


def test_eval_flags_and_defaults() -> None:
    got = dataclass_from_args(EvalArgs, parse(["eval", "runs/x"]))
    assert got == EvalArgs(source="runs/x", episodes=EVAL_EPISODES, seed=EVAL_SEED, video=None,
                           video_episodes=3, robot="")
    assert (EVAL_EPISODES, EVAL_SEED) == (200, 12345)
    argv = ["eval", "p.onnx", "--episodes", "4", "--seed", "7", "--video", "v.mp4",
            "--video-episodes", "2", "--robot", "arm.yaml"]
    assert dataclass_from_args(EvalArgs, parse(argv)) == EvalArgs("p.onnx", 4, 7, "v.mp4", 2,
                                                                  "arm.yaml")


def test_export_flags_and_defaults() -> None:
    from karakuri.policies.export import EXPORT_ATOL

    assert dataclass_from_args(ExportArgs, parse(["export", "r"])) == ExportArgs("r", "policy.onnx",
                                                                                None)
    for flag in ("-o", "--output"):
        got = dataclass_from_args(ExportArgs, parse(["export", "r", flag, "f.onnx", "--atol",
                                                     "1e-4"]))
        assert got == ExportArgs("r", "f.onnx", 1e-4)
    assert EXPORT_ATOL == 1e-5  # what --atol means when not given


def test_demo_flags_and_defaults() -> None:
    assert dataclass_from_args(DemoArgs, parse(["demo"])) == DemoArgs(None, None, 20)
    argv = ["demo", "--run-dir", "runs/d", "--total-steps", "4096", "--episodes", "3"]
    assert dataclass_from_args(DemoArgs, parse(argv)) == DemoArgs("runs/d", 4096, 3)


def test_train_flags_are_the_train_config() -> None:
    args = parse(["train", "reach"])
    assert dataclass_from_args(TrainConfig, args, task="reach") == TrainConfig(task="reach")
    flags = {a.dest for a in subparser("train")._actions}
    assert {f.name for f in dataclasses.fields(TrainConfig)} - {"task"} <= flags


@pytest.mark.parametrize("cls", [EvalArgs, ExportArgs, DemoArgs])
def test_every_field_is_a_flag_with_a_help_line(cls: type) -> None:
    name = {EvalArgs: "eval", ExportArgs: "export", DemoArgs: "demo"}[cls]
    text = subparser(name).format_help()
    for f in dataclasses.fields(cls):
        assert f.name.replace("_", "-") in text or f.name in text
