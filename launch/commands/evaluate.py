"""``karakuri eval RUN_DIR|policy.onnx``: evaluate on fixed seeds, optionally record a video.

The result is one JSON document on stdout; a task with stages also gets its stage funnel as a
table on stderr (docs/tasks.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from karakuri.launch.cli_config import add_dataclass_args, dataclass_from_args
from karakuri.policies.run_dir import EVAL_EPISODES, EVAL_SEED


@dataclass(frozen=True)
class EvalArgs:
    """What ``karakuri eval`` evaluates, and how.

    Attributes:
        source: run directory, or a policy.onnx file
        episodes: episodes (one per world)
        seed: seed of the episodes
        video: record episodes of world 0
        video_episodes: episodes in the video
        robot: the robot to evaluate on (default: the one the run or file names; give the
            sidecar of a robot that is not registered)
        randomize: with the task's domain randomization (masses, friction, gains, damping,
            sensor noise, latency), to see how robust the policy is
    """

    source: str = field(metadata={"positional": True})
    episodes: int = EVAL_EPISODES
    seed: int = EVAL_SEED
    video: str | None = field(default=None, metadata={"metavar": "OUT.mp4"})
    video_episodes: int = 3
    robot: str = field(default="", metadata={"metavar": "NAME|SIDECAR.yaml"})
    randomize: bool = False


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``eval``; its arguments are the fields of :class:`EvalArgs`."""
    p = sub.add_parser("eval", help="evaluate a run (or an exported policy.onnx) on fixed seeds")
    add_dataclass_args(p, EvalArgs)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from karakuri.launch.cli import usage_error
    from karakuri.launch.outputs import check_output_file
    from karakuri.policies.evaluate import evaluate_source, funnel_table, record_video
    from karakuri.robot.policy import PolicyError

    opts = dataclass_from_args(EvalArgs, args)
    src = Path(opts.source)
    if not src.exists():
        return usage_error("eval", f"{src} does not exist")
    if src.is_file() and src.suffix != ".onnx":
        return usage_error("eval", f"{src} is neither a run directory nor a .onnx policy file")
    if opts.episodes < 1 or opts.video_episodes < 1:
        return usage_error("eval", f"--episodes ({opts.episodes}) and --video-episodes "
                                   f"({opts.video_episodes}) must be >= 1")
    try:  # before the evaluation: a bad video path must not cost a whole eval
        video = check_output_file(opts.video, "--video", (".mp4",)) if opts.video else None
        result = evaluate_source(src, episodes=opts.episodes, seed=opts.seed, robot=opts.robot,
                                 randomize=opts.randomize)
    except (FileNotFoundError, ValueError, PolicyError) as e:
        return usage_error("eval", e)
    print(json.dumps(result, indent=2))
    if table := funnel_table(result):  # stderr: stdout stays one JSON document for tools
        print(table, file=sys.stderr)
    if video is not None:
        path = record_video(src, video, episodes=opts.video_episodes, seed=opts.seed,
                            robot=opts.robot)
        print(f"video written to {path}")
    return 0
