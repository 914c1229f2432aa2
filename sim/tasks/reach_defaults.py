"""Reach's constants that code without torch or MuJoCo needs (the launch schema, deploy).

One home for numbers that the task, its evaluation and the sim-in-the-loop judge must agree
on; importing this module pulls in nothing but the standard library.
"""

from __future__ import annotations

#: Tool-to-target distance that counts as a reached target, m (task success, SIL judge).
SUCCESS_RADIUS_M: float = 0.02
