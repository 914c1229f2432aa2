"""``karakuri eval RUN_DIR|policy.onnx``: evaluate on fixed seeds, optionally record a video."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``eval``."""
    p = sub.add_parser("eval", help="evaluate a run (or an exported policy.onnx) on fixed seeds")
    p.add_argument("source", help="run directory, or a policy.onnx file")
    p.add_argument("--episodes", type=int, default=200, help="episodes (one per world)")
    p.add_argument("--seed", type=int, default=12345, help="seed of the episodes")
    p.add_argument("--video", default=None, metavar="OUT.mp4", help="record episodes of world 0")
    p.add_argument("--video-episodes", type=int, default=3, help="episodes in the video")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from karakuri.policies.evaluate import evaluate_source, record_video

    src = Path(args.source)
    if not src.exists():
        print(f"karakuri eval: {src} does not exist")
        return 2
    try:
        result = evaluate_source(src, episodes=args.episodes, seed=args.seed)
    except (FileNotFoundError, ValueError) as e:
        print(f"karakuri eval: {e}")
        return 2
    print(json.dumps(result, indent=2))
    if args.video:
        path = record_video(src, args.video, episodes=args.video_episodes, seed=args.seed)
        print(f"video written to {path}")
    return 0
