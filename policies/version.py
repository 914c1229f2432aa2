"""The code version written into run directories and policy files."""

from __future__ import annotations

import subprocess
from pathlib import Path

import karakuri


def code_version() -> str:
    """``<package version>+g<commit>[.dirty]`` where a git checkout is at hand, else the version."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return karakuri.__version__
    return f"{karakuri.__version__}+g{commit}{'.dirty' if dirty else ''}"
