"""``karakuri deploy LAUNCH.yaml``: run a policy file in the loop as a launch file says.

Everything is in the launch file (see ``docs/control-loop.md``); the command takes no flags
that repeat its keys.  Imports no torch; MuJoCo only for ``link: {kind: sil}``.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

from karakuri.launch.cli import usage_error
from karakuri.launch.cli_config import add_dataclass_args, dataclass_from_args


@dataclass(frozen=True)
class DeployArgs:
    """What ``karakuri deploy`` takes: a launch file, and where to put the summary.

    Attributes:
        launch: launch file (YAML), e.g. launch/reach_sil.yaml
        summary_json: also write the summary as JSON to PATH
    """

    launch: str = field(metadata={"positional": True})
    summary_json: str | None = field(default=None, metadata={"metavar": "PATH"})


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``deploy``."""
    p = sub.add_parser(
        "deploy", help="run a policy at a fixed rate over serial, ROS 2 or sim-in-the-loop",
        description="Run the loop a launch file describes; prints the timing summary, link "
                    "counters, safety interventions and (sim-in-the-loop) the success rate. "
                    "Ctrl-C stops it and leaves the robot holding.")
    add_dataclass_args(p, DeployArgs)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the launch file; returns the exit code.

    0 after a normal end or a stop signal, 2 when it cannot start, else the fault's
    (``karakuri.robot.loop_stats.EXIT_CODES``: 1 policy/filter, 3 robot, 4 bad state, 5 stale
    state, 6 link).
    """
    from karakuri.launch.deploy import deploy
    from karakuri.launch.schema import LaunchError, load_launch
    from karakuri.robot.control_loop import LoopError
    from karakuri.robot.link import LinkError
    from karakuri.robot.policy import PolicyError
    from karakuri.robot.spec import RobotSpecError

    opts = dataclass_from_args(DeployArgs, args)
    try:
        cfg = load_launch(opts.launch)
        result = deploy(cfg)
    except (LaunchError, LoopError, PolicyError, RobotSpecError, LinkError) as e:
        return usage_error("deploy", e)
    s = result.summary
    print(s.format())
    if result.telemetry is not None:
        print(f"  telemetry: {result.telemetry} (open it in Foxglove)")
    if s.success_rate is not None:
        print(f"success rate: {s.success_rate:.1%} over {len(s.episodes)} episodes")
    for note in result.notes:  # e.g. the allow_unsigned warning, again at the end
        print(note)
    if opts.summary_json is not None:
        out = Path(opts.summary_json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(s.to_json())
    return s.exit_code
