"""How the virtual MCU runs: its config dataclass, without MuJoCo.

Split from :mod:`karakuri.firmware_bridge.virtual_mcu` (which needs MuJoCo and re-exports
:class:`VirtualMCUConfig`) so that a launch file's ``link: {kind: sil}`` section, which embeds
these fields, parses on an edge box with the base install.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class VirtualMCUConfig:
    """How the virtual MCU runs.

    Attributes:
        link_path: Keep a symlink to the pty at this path, stable across unplug and replug;
            empty for none (then the port is the bare /dev/pts/N).
        state_rate_hz: STATE rate until a HELLO asks for another, Hz; None: the robot's
            control rate.
        paced: Pace the physics to the wall clock (off: as fast as the CPU allows).  Was
            ``realtime`` (``karakuri sil --realtime`` still works, with a warning).
        max_lag_s: Behind the wall clock by more than this, skip ahead instead of catching up, s.
        record_commands: Keep every applied COMMAND target (tests check none was corrupted).
    """

    link_path: str = ""
    state_rate_hz: float | None = None
    paced: bool = True
    max_lag_s: float = 0.02
    record_commands: bool = False

    def __post_init__(self) -> None:
        if self.state_rate_hz is not None and not self.state_rate_hz > 0:
            raise ValueError(f"state_rate_hz={self.state_rate_hz} must be > 0 Hz (or None)")
        if not (math.isfinite(self.max_lag_s) and self.max_lag_s > 0):
            raise ValueError(f"max_lag_s={self.max_lag_s} must be > 0 s")


__all__ = ["VirtualMCUConfig"]
