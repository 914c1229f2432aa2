"""Writing a launch file for a test: the one helper behind every hand-built launch YAML.

Importable from every test folder (pytest puts ``tests/``, where the root conftest lives, on
``sys.path``).  The loop's real-time measures are off by default: the test machine is shared,
and a SCHED_FIFO loop thread starves an in-process plant.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

REALTIME_OFF = {"sched_fifo_priority": 0, "mlockall": False}
"""``realtime:`` for tests: no SCHED_FIFO, no mlockall."""


def write_launch(path: Path, *, policy: str | Path, link: dict[str, Any],
                 targets: Sequence[Sequence[float]], hold_s: float, reset_s: float = 0.0,
                 robot: str = "industrial_arm", **keys: Any) -> Path:
    """Write a launch file at ``path`` and return ``path``.

    Args:
        path: The YAML file to write (relative keys resolve against its folder).
        policy: The policy file, as the launch file names it.
        link: The ``link:`` section, e.g. ``{"kind": "sil"}``.
        targets: One command per episode (m, base frame), for ``command.targets``.
        hold_s: Episode length, s.
        reset_s: Drive back to the default pose before each episode, s.
        robot: The robot the launch file names.
        **keys: Any other top-level key (``soft_start_s``, ``telemetry``, ``audit_log``...);
            they replace the defaults, ``realtime`` (:data:`REALTIME_OFF`) included.
    """
    data: dict[str, Any] = {
        "robot": robot, "policy": str(policy), "link": link,
        "command": {"targets": [[float(v) for v in t] for t in targets], "hold_s": hold_s,
                    "reset_s": reset_s},
        "realtime": dict(REALTIME_OFF)}
    data.update(keys)
    path.write_text(yaml.safe_dump(data))
    return path
