"""``karakuri eval RUN_DIR|policy.onnx``: evaluate on fixed seeds, optionally record a video.

The result is one JSON document on stdout; a task with stages also gets its stage funnel as a
table on stderr (docs/tasks.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``eval``."""
    p = sub.add_parser("eval", help="evaluate a run (or an exported policy.onnx) on fixed seeds")
    p.add_argument("source", help="run directory, or a policy.onnx file")
    p.add_argument("--episodes", type=int, default=200, help="episodes (one per world)")
    p.add_argument("--seed", type=int, default=12345, help="seed of the episodes")
    p.add_argument("--video", default=None, metavar="OUT.mp4", help="record episodes of world 0")
    p.add_argument("--video-episodes", type=int, default=3, help="episodes in the video")
    p.add_argument("--robot", default="", metavar="NAME|SIDECAR.yaml",
                   help="the robot to evaluate on (default: the one the run or file names; "
                        "give the sidecar of a robot that is not registered)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from karakuri.launch.cli import usage_error
    from karakuri.launch.outputs import check_output_file
    from karakuri.policies.evaluate import evaluate_source, funnel_table, record_video
    from karakuri.robot.policy import PolicyError

    src = Path(args.source)
    if not src.exists():
        return usage_error("eval", f"{src} does not exist")
    if src.is_file() and src.suffix != ".onnx":
        return usage_error("eval", f"{src} is neither a run directory nor a .onnx policy file")
    if args.episodes < 1 or args.video_episodes < 1:
        return usage_error("eval", f"--episodes ({args.episodes}) and --video-episodes "
                                   f"({args.video_episodes}) must be >= 1")
    try:  # before the evaluation: a bad video path must not cost a whole eval
        video = check_output_file(args.video, "--video", (".mp4",)) if args.video else None
        result = evaluate_source(src, episodes=args.episodes, seed=args.seed, robot=args.robot)
    except (FileNotFoundError, ValueError, PolicyError) as e:
        return usage_error("eval", e)
    print(json.dumps(result, indent=2))
    if table := funnel_table(result):  # stderr: stdout stays one JSON document for tools
        print(table, file=sys.stderr)
    if video is not None:
        path = record_video(src, video, episodes=args.video_episodes, seed=args.seed,
                            robot=args.robot)
        print(f"video written to {path}")
    return 0
