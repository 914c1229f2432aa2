"""Foreground processes (``karakuri sil``, ``karakuri proxy``): stop cleanly on kill and hang-up.

Ctrl-C reaches them as ``KeyboardInterrupt``; SIGTERM (``kill``, systemd, docker) and SIGHUP
(a closed terminal) become the same clean stop through :func:`stop_on_signals`.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterator
from typing import Any


@contextlib.contextmanager
def stop_on_signals(request_stop: Callable[[], None]) -> Iterator[None]:
    """Call ``request_stop`` on SIGTERM or SIGHUP while the block runs; restore after.

    Enter it before printing the ``port:`` line: whoever starts the process and reads that
    line may signal it at once.
    """
    def on_signal(signum: int, frame: Any) -> None:
        request_stop()

    old = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
