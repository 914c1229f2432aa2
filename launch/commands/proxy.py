"""``karakuri proxy --mcu PTY``: a fault-injection proxy between a host and an MCU's port.

It opens a new pty for the host and relays bytes to and from the MCU's port (the pty that
``karakuri sil`` prints, or a real device), with seeded faults per direction
(:mod:`karakuri.firmware_bridge.fault_proxy`).  The first line it prints is ``port: PATH``:
point the host (a launch file's ``link: {kind: serial, port: PATH}``) there.  Ctrl-C, SIGTERM
or SIGHUP stops it and prints what each fault did.
"""

from __future__ import annotations

import argparse
import dataclasses
import threading
import time
from dataclasses import dataclass, field

from karakuri.firmware_bridge.fault_proxy import DIRECTIONS, DirectionFaults, FaultProxy
from karakuri.firmware_bridge.protocol import Fault, FaultCode, Hello, Message
from karakuri.launch.cli import usage_error
from karakuri.launch.cli_config import add_dataclass_args, dataclass_from_args
from karakuri.launch.foreground import stop_on_signals

_MESSAGES: dict[str, Message] = {
    "hello": Hello(20_000),  # a foreign host's handshake (it disarms the MCU)
    "fault": Fault(FaultCode.ESTOP, 0xFFFF),  # a forged e-stop FAULT event
}


@dataclass(frozen=True)
class ProxyArgs:
    """What ``karakuri proxy`` relays, beside each direction's faults (``--to-mcu-*``, ...).

    Attributes:
        mcu: the MCU's port: the pty 'karakuri sil' prints, or a device (required)
        link_path: keep a symlink to the host-side pty here
        seed: seed of the fault generators
        duration_s: stop after this long, s (default: until Ctrl-C)
    """

    mcu: str | None = field(default=None, metadata={"metavar": "PORT"})
    link_path: str = ""
    seed: int = 0
    duration_s: float | None = None


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``proxy``."""
    p = sub.add_parser(
        "proxy", help="relay a serial link through seeded faults (corrupt, drop, delay, cut, "
                      "inject)",
        description="Relay bytes between a new host-side pty and an MCU's port with faults per "
                    "direction. Prints 'port: PATH' first; Ctrl-C stops it and prints its "
                    "counters.")
    add_dataclass_args(p, ProxyArgs)
    p.add_argument("--inject", action="append", default=[], metavar="AT_S:DIRECTION:WHAT",
                   help="at AT_S s, put WHAT on the line towards DIRECTION (to_mcu, to_host); "
                        f"WHAT: {', '.join(_MESSAGES)} or hex:BYTES (raw). Repeatable")
    for d in DIRECTIONS:
        for f in dataclasses.fields(DirectionFaults):
            flag = f"--{d}-{f.name}".replace("_", "-")
            p.add_argument(flag, dest=f"{d}__{f.name}", type=float, default=f.default,
                           help=f"{f.name} towards {d.split('_')[1]} (default: {f.default})")
    p.set_defaults(func=run)


def parse_inject(text: str) -> tuple[float, str, bytes | Message]:
    """``AT_S:DIRECTION:WHAT`` -> (s, direction, raw bytes or message); ValueError names it."""
    parts = text.split(":", 2)
    if len(parts) != 3 or parts[1] not in DIRECTIONS:
        raise ValueError(f"--inject {text!r}: expected AT_S:DIRECTION:WHAT with DIRECTION one "
                         f"of {list(DIRECTIONS)}")
    try:
        at = float(parts[0])
    except ValueError:
        raise ValueError(f"--inject {text!r}: AT_S={parts[0]!r} is not a number") from None
    what = parts[2]
    if what in _MESSAGES:
        return at, parts[1], _MESSAGES[what]
    if what.startswith("hex:"):
        try:
            return at, parts[1], bytes.fromhex(what[4:])
        except ValueError:
            raise ValueError(f"--inject {text!r}: {what[4:]!r} is not hex") from None
    raise ValueError(f"--inject {text!r}: WHAT={what!r}; allowed: {', '.join(_MESSAGES)}, "
                     f"hex:BYTES")


def run(args: argparse.Namespace) -> int:
    """Exit code 0 after Ctrl-C, SIGTERM, SIGHUP or the duration; 2 on a bad setting or port."""
    opts = dataclass_from_args(ProxyArgs, args)
    if not opts.mcu:
        return usage_error("proxy", "--mcu PORT is required: the MCU's port (the pty 'karakuri "
                                    "sil' prints, or a device)")
    try:
        faults = {d: DirectionFaults(**{f.name: getattr(args, f"{d}__{f.name}")
                                        for f in dataclasses.fields(DirectionFaults)})
                  for d in DIRECTIONS}
        injections = sorted(parse_inject(t) for t in args.inject)
        proxy = FaultProxy(opts.mcu, faults["to_mcu"], faults["to_host"], seed=opts.seed,
                           link_path=opts.link_path)
        port = proxy.open()
    except (ValueError, OSError) as e:
        return usage_error("proxy", e)

    with stop_on_signals(proxy.request_stop):
        print(f"port: {port}", flush=True)
        print(f"fault proxy: {opts.mcu} <-> {port}; to_mcu {faults['to_mcu']}, to_host "
              f"{faults['to_host']}; Ctrl-C to stop", flush=True)
        done = threading.Event()

        def script() -> None:
            for at, direction, what in injections:
                if done.wait(max(0.0, proxy.t0 + at - time.monotonic())):
                    return
                proxy.inject(direction, what)  # type: ignore[arg-type]

        threading.Thread(target=script, name="proxy-script", daemon=True).start()
        try:
            proxy.run(opts.duration_s)
        except KeyboardInterrupt:
            pass
        finally:
            done.set()
            proxy.close()
    counts = {k: v for k, v in proxy.counters().items() if v}
    print(f"proxy stopped; counters: {counts}", flush=True)
    return 0
