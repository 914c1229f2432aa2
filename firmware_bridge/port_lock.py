"""One host per serial port: a lock file naming the holder, plus flock and TIOCEXCL on the port.

Two ``karakuri deploy`` on one port would interleave their COMMANDs.  :class:`PortLock` takes
``karakuri-<port>.lock`` (in ``$XDG_RUNTIME_DIR`` or the temp folder; the port's real path, so
a ``/dev/serial/by-id`` link and its ``/dev/ttyACM0`` are one port) with ``flock`` and writes
its PID there, so the second host is told ``port /dev/ttyACM0 in use by PID 1234``.  The port
itself is opened with pyserial's ``exclusive`` (``flock``) and then set ``TIOCEXCL``, so other
programs opening the tty are refused by the kernel too (root excepted).

POSIX only; on other systems the lock is a no-op.  Standard library only.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

try:
    import fcntl
    import termios
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]
    termios = None  # type: ignore[assignment]


class PortInUseError(OSError):
    """Another process holds the port; the message names it (PID where known)."""


def lock_path(port: str) -> Path:
    """The lock file of ``port`` (by its real path)."""
    real = os.path.realpath(port)
    name = "karakuri-" + real.strip("/").replace("/", "_") + ".lock"
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    return Path(base) / name


def holders(port: str) -> list[int]:
    """PIDs of processes with ``port`` open, from ``/proc`` (best effort; [] where unreadable)."""
    real, pids = os.path.realpath(port), []
    with contextlib.suppress(OSError):
        for pid in os.listdir("/proc"):
            if not pid.isdigit() or int(pid) == os.getpid():
                continue
            with contextlib.suppress(OSError):
                for fd in os.listdir(f"/proc/{pid}/fd"):
                    with contextlib.suppress(OSError):
                        if os.readlink(f"/proc/{pid}/fd/{fd}") == real:
                            pids.append(int(pid))
                            break
    return pids


class PortLock:
    """The lock file of one port, held from :meth:`acquire` to :meth:`release`.

    Args:
        port: The serial device path.
    """

    def __init__(self, port: str) -> None:
        self.port = port
        self.path = lock_path(port)
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock and write this PID into it.

        Raises:
            PortInUseError: another process holds it; names the port, the PID and the file.
        """
        if fcntl is None or self._fd is not None:
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            other = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise PortInUseError(
                f"port {self.port} in use by PID {other} (lock file {self.path}); stop that "
                f"karakuri first, one host per robot") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Drop the lock (safe to call twice)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)  # closing drops the flock


def set_exclusive(fd: int) -> None:
    """``TIOCEXCL`` on an open tty: further opens fail with EBUSY (a no-op off POSIX)."""
    if fcntl is not None and termios is not None and hasattr(termios, "TIOCEXCL"):
        with contextlib.suppress(OSError):
            fcntl.ioctl(fd, termios.TIOCEXCL)
