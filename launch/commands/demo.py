"""``karakuri demo``: the whole path on CPU in a few minutes.

Train reach on the industrial arm, export the policy file, deploy it at 50 Hz against the
virtual MCU over a pseudo-terminal, and print the success rates and the loop's timing.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from karakuri.launch.cli_config import add_dataclass_args, dataclass_from_args

LAUNCH = Path(__file__).resolve().parent.parent / "reach_sil.yaml"


@dataclass(frozen=True)
class DemoArgs:
    """What ``karakuri demo`` runs.

    Attributes:
        run_dir: where to write the run (default runs/demo-<time>)
        total_steps: override the training budget
        episodes: sim-in-the-loop episodes
    """

    run_dir: str | None = field(default=None, metadata={"metavar": "RUN_DIR"})
    total_steps: int | None = field(default=None, metadata={"metavar": "TOTAL_STEPS"})
    episodes: int = 20


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``demo``; its flags are the fields of :class:`DemoArgs`."""
    p = sub.add_parser("demo", help="train reach, export, deploy sim-in-the-loop (CPU)")
    add_dataclass_args(p, DemoArgs)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from karakuri.launch.parity import sil_parity
    from karakuri.launch.schema import load_launch
    from karakuri.policies.export_run import export_run
    from karakuri.policies.run_dir import TrainConfig
    from karakuri.policies.train import train

    opts = dataclass_from_args(DemoArgs, args)
    run_dir = Path(opts.run_dir or f"runs/demo-{time.strftime('%Y%m%d-%H%M%S')}")
    cfg = TrainConfig(task="reach", run_dir=str(run_dir))
    if opts.total_steps:
        cfg = TrainConfig(task="reach", run_dir=str(run_dir), total_steps=opts.total_steps)
    print(f"[1/3] training reach on CPU ({cfg.total_steps:,} env steps, {cfg.num_envs} worlds)")
    train(cfg)
    ev = json.loads((run_dir / "eval.json").read_text())
    print(
        f"      {ev['train_wall_s']:.0f} s; evaluated success {100 * ev['success_rate']:.1f} % "
        f"on {ev['episodes']} fixed-seed episodes"
    )
    policy = run_dir / "policy.onnx"
    print(f"[2/3] exporting {policy}")
    print(f"      {export_run(run_dir, policy)}")
    print(f"[3/3] deploying {policy} at 50 Hz against the virtual MCU (sim-in-the-loop)")
    cmd = load_launch(LAUNCH).command
    assert cmd is not None and cmd.box is not None  # reach_sil.yaml draws targets from a box
    fewer = dataclasses.replace(cmd, box=dataclasses.replace(cmd.box, count=opts.episodes))
    par = sil_parity(LAUNCH, policy=policy, telemetry=run_dir / "sil.mcap", command=fewer)
    print(par.deploy.summary.format())
    print()
    print(
        f"success in the loop: {100 * par.loop_success:.1f} % over {par.episodes} episodes; "
        f"in sim on the same targets: {100 * par.sim_success:.1f} % "
        f"(gap {par.gap_pp:.1f} pp)"
    )
    print(f"run saved in {run_dir} (policy.onnx, eval.json, sil.mcap for Foxglove)")
    return 0
