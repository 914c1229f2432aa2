"""``karakuri train TASK``: train a policy on CPU (SB3) or GPU (rsl_rl, ``--backend warp``)."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from karakuri.launch.cli_config import add_dataclass_args, dataclass_from_args
from karakuri.policies.run_dir import TrainConfig


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``train``; its flags are the fields of :class:`TrainConfig` (and ``--resume``)."""
    p = sub.add_parser(
        "train",
        help="train a policy for a task",
        description=(
            "Train a policy. Flags are the fields of TrainConfig. On a GPU: --backend warp "
            "--device cuda --num-envs 4096 trains with rsl_rl over MuJoCo Warp (docs/gpu.md); "
            "for several GPUs start it under torchrun with --run-dir."
        ),
    )
    p.add_argument("task", help="task name (e.g. reach)")
    p.add_argument(
        "--resume",
        metavar="RUN_DIR",
        default=None,
        help="continue a run: restores policy, optimizer, normalizer and step count",
    )
    add_dataclass_args(p, TrainConfig, skip=("task",))
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from karakuri.launch.cli import usage_error
    from karakuri.policies.train import train
    from karakuri.sim.registry import TASKS

    if args.task not in TASKS:
        return usage_error("train", f"unknown task {args.task!r}; valid tasks: {sorted(TASKS)}")
    try:
        cfg = dataclass_from_args(TrainConfig, args, task=args.task)
    except ValueError as e:
        return usage_error("train", e)
    if cfg.robot.endswith((".yaml", ".yml")):  # the run finds its robot from any folder
        cfg = replace(cfg, robot=str(Path(cfg.robot).resolve()))
    if args.resume and not Path(args.resume, "config.json").exists():
        return usage_error("train", f"--resume {args.resume} is not a run directory (no "
                                    f"config.json)")
    try:
        run_dir = train(cfg, resume=args.resume)
    except ValueError as e:  # e.g. an unknown --robot, or --device cuda where warp finds none
        return usage_error("train", e)
    result = json.loads((run_dir / "eval.json").read_text())
    print(f"trained {result['env_steps']:,} env steps in {result['train_wall_s']:.1f} s")
    if "compile_s" in result:
        print(
            f"  {result['env_steps_per_s']:,} env steps/s; kernel compilation and graph capture "
            f"took {result['compile_s']:.1f} s more (setup {result['setup_s']:.1f} s, not counted)"
        )
    print(
        f"evaluated success: {100 * result['success_rate']:.1f} % over {result['episodes']} "
        f"fixed-seed episodes (seed {result['seed']})"
    )
    print(f"run saved in {run_dir}")
    return 0
