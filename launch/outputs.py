"""Check a file a command will write, before the command does its work.

``karakuri export -o``, ``eval --video`` and a launch file's ``telemetry`` all write a file at
the end of a long run (or while the robot moves).  :func:`check_output_file` finds out first
whether that file can be written: not a directory, no file where a folder must be, a folder
that exists (or can be made) and takes a new file.  Standard library only.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


class OutputPathError(ValueError):
    """A file cannot be written where asked; the message names the path and why."""


def check_output_file(path: str | Path, what: str, suffixes: tuple[str, ...] = ()) -> Path:
    """Make sure ``path`` can be written as a file, creating its folder if needed.

    Writes nothing at ``path`` itself: a probe file is created beside it and removed.

    Args:
        path: The file to be written.
        what: How the user named it, for the message, e.g. ``"export -o"``.
        suffixes: Allowed suffixes (e.g. ``(".mp4",)``); any when empty.

    Returns:
        ``path`` as a :class:`Path`.

    Raises:
        OutputPathError: it is a directory, lies under a file, has a wrong suffix, or its
            folder cannot be created or written.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"{what} {path} is a directory; give a file path in it, e.g. "
                              f"{path / ('out' + (suffixes[0] if suffixes else ''))}")
    if suffixes and path.suffix.lower() not in suffixes:
        raise OutputPathError(f"{what} {path}: expected a {' or '.join(suffixes)} file")
    blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise OutputPathError(f"{what} {path}: {blocker} is a file, not a folder")
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OutputPathError(f"{what} {path}: cannot write in {parent}: "
                              f"{e.strerror or e}") from None
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputPathError(f"{what} {path}: the file exists and is not writable")
    return path
