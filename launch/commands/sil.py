"""``karakuri sil``: a virtual MCU on a pty, for pointing your own tools at.

It runs the robot's MuJoCo model behind a pseudo-terminal that speaks the Karakuri wire
protocol (``docs/wire-protocol.md``), in the foreground, until Ctrl-C or ``--duration-s``.
The first line it prints is ``port: PATH``; open PATH as a serial port.  ``--link-path`` keeps
a stable symlink to the pty.  The fault flags make the line noisy.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Any

from karakuri.firmware_bridge.fault_channel import FaultConfig
from karakuri.firmware_bridge.virtual_mcu import VirtualMCU, VirtualMCUConfig
from karakuri.launch.cli import usage_error
from karakuri.launch.cli_config import add_dataclass_args, dataclass_from_args
from karakuri.launch.foreground import stop_on_signals


@dataclass(frozen=True)
class SilArgs:
    """What ``karakuri sil`` runs, beside the virtual MCU's config and its faults.

    Attributes:
        robot: Registered robot name or sidecar .yaml.
        duration_s: Stop after this much MCU (simulated) time, s; None: run until Ctrl-C.
    """

    robot: str = "industrial_arm"
    duration_s: float | None = None


class _DeprecatedRealtime(argparse.Action):
    """``--realtime``/``--no-realtime``: the old name of ``--paced``; warns, then sets it."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        paced = not (option_string or "").startswith("--no-")
        new = "--paced" if paced else "--no-paced"
        print(f"karakuri sil: {option_string} is deprecated; use {new}", file=sys.stderr)
        namespace.paced = paced


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``sil``."""
    p = sub.add_parser(
        "sil", help="run a virtual MCU: a robot's MuJoCo model behind a pty (serial port)",
        description="Run a virtual MCU in the foreground. Prints 'port: PATH' first; Ctrl-C "
                    "stops it and prints its counters.")
    add_dataclass_args(p, SilArgs)
    add_dataclass_args(p, VirtualMCUConfig)
    p.add_argument("--realtime", "--no-realtime", nargs=0, action=_DeprecatedRealtime,
                   help="deprecated name of --paced / --no-paced")
    add_dataclass_args(p, FaultConfig)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Exit code 0 after Ctrl-C, SIGTERM, SIGHUP or the duration; 2 when the MCU cannot start."""
    from karakuri.robot.registry import load_robot
    from karakuri.robot.spec import RobotSpecError

    opts = dataclass_from_args(SilArgs, args)
    try:
        spec = load_robot(opts.robot)
        mcu = VirtualMCU(spec, dataclass_from_args(VirtualMCUConfig, args),
                         dataclass_from_args(FaultConfig, args))
        port = mcu.open()
    except (RobotSpecError, ValueError, OSError) as e:
        return usage_error("sil", e)

    with stop_on_signals(mcu.request_stop):
        print(f"port: {port}", flush=True)
        print(f"virtual MCU: robot {spec.name!r}, {spec.n_joints} joints, joint hash "
              f"0x{spec.joint_hash():08x}, servo {mcu.plant.dt * 1e3:g} ms, faults "
              f"{mcu.faults if mcu.faults.active else 'none'}; Ctrl-C to stop", flush=True)
        try:
            mcu.run(opts.duration_s)
        except KeyboardInterrupt:
            pass
        finally:
            mcu.stop()
    counts = {k: v for k, v in mcu.counters().items() if v}
    print(f"stopped at t={mcu.sim_time:.3f} s ({mcu.mode.value}); counters: {counts}", flush=True)
    return 0
