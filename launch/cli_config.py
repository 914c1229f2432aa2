"""Config dataclass to argparse flags, so every command's flags are its config's fields.

The mapping lives in :mod:`karakuri.robot.dataclass_cli` (it serves entry points below
``launch`` too, e.g. ``python -m karakuri.firmware_bridge.ros2_sim``); the commands import it
from here.  A field's ``metadata`` may make it positional (``positional=True``), give its
option strings (``flags=("-o", "--output")``) or its ``--help`` placeholder (``metavar``).
Help text comes from the class docstring's ``Attributes:`` section.
"""

from __future__ import annotations

from karakuri.robot.dataclass_cli import add_dataclass_args, dataclass_from_args

__all__ = ["add_dataclass_args", "dataclass_from_args"]
