"""``karakuri robot show|check|list``: a robot's spec, its pre-flight, the registered robots."""

from __future__ import annotations

import argparse
import json

from karakuri.robot.spec import RobotSpec, RobotSpecError


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``robot``."""
    p = sub.add_parser("robot", help="inspect robot descriptions")
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    show = verbs.add_parser("show", help="print a robot's spec (joints, limits, gains)")
    show.add_argument("robot", help="registered robot name or path of a sidecar .yaml")
    show.add_argument("--json", action="store_true", help="print JSON instead of a table")
    show.set_defaults(func=_show)
    check = verbs.add_parser(
        "check", help="pre-flight a robot before training: sag, speed, workspace, gripper"
    )
    check.add_argument("robot", help="registered robot name or path of a sidecar .yaml")
    check.set_defaults(func=_check)
    ls = verbs.add_parser("list", help="list the registered robots")
    ls.set_defaults(func=_list)


def format_spec(spec: RobotSpec) -> str:
    """A fixed-width table of the spec, one row per joint."""
    grav = spec.extra.get("gravity_compensation")
    source = spec.extra.get("source_model", spec.model_path)
    lines = [
        f"robot {spec.name}  ({spec.n_joints} joints, tool site {spec.tool_site or '-'}, "
        f"{spec.control_rate_hz:g} Hz)",
        f"model {source}",
    ]
    if source != spec.model_path:
        lines.append(f"simulated as {spec.model_path}")
    if grav:
        lines.append(f"gravity compensation: {_GRAVITY[grav]}")
    lines += [f"  sidecar: {c}" for c in spec.extra.get("model_changes", [])]
    lines.append("")
    w = max(15, max(len(j) for j in spec.joint_names) + 2)
    head = (
        f"{'#':>2}  {'joint':<{w}}{'role':<8}{'lower':>9}{'upper':>9}{'home':>9}"
        f"{'vel':>8}{'accel':>8}{'effort':>8}{'kp':>8}{'kd':>7}"
    )
    lines += [head, "-" * len(head)]
    for i, j in enumerate(spec.joint_names):
        role = "gripper" if j in spec.gripper_joints else "arm"
        lines.append(
            f"{i:>2}  {j:<{w}}{role:<8}{spec.lower[i]:>9.4f}{spec.upper[i]:>9.4f}"
            f"{spec.default_pose[i]:>9.4f}{spec.velocity_limit[i]:>8.3f}{spec.accel_limit[i]:>8.1f}"
            f"{spec.effort_limit[i]:>8.1f}{spec.kp[i]:>8.0f}{spec.kd[i]:>7.0f}"
        )
    lines.append("")
    lines.append("units: rad, rad/s, rad/s^2, N*m (m, m/s, N for prismatic joints)")
    return "\n".join(lines)


_GRAVITY = {
    "model": "on (in the model file)",
    "sidecar": "on (added by the loader; sidecar gravity_compensation: false turns it off)",
    "off": "off (sidecar gravity_compensation: false)",
}


def _check(args: argparse.Namespace) -> int:
    from karakuri.sim.robot_check import check_robot, format_items

    _, items = check_robot(args.robot)
    print(format_items(items))
    failed = [i.name for i in items if i.verdict == "fail"]
    print(f"\n{'FAIL: ' + ', '.join(failed) if failed else 'ready to train'}")
    return 1 if failed else 0


def _show(args: argparse.Namespace) -> int:
    from karakuri.robot.registry import load_robot

    try:
        spec = load_robot(args.robot)
    except RobotSpecError as e:
        print(f"karakuri robot show: {e}")
        return 2
    print(json.dumps(spec.to_dict(), indent=2) if args.json else format_spec(spec))
    return 0


def _list(args: argparse.Namespace) -> int:
    from karakuri.robot.registry import ROBOTS

    for name, path in sorted(ROBOTS.items()):
        print(f"{name:<20} {path}")
    return 0
