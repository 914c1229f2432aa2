"""Client of the C core's stdin/stdout harness (firmware_bridge/firmware/host/harness.c).

Floats cross as the hex of their binary32 bits, so nothing is lost in printing.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

FIRMWARE = Path(__file__).resolve().parents[2] / "firmware_bridge" / "firmware"
COUNTERS = ("frames_rx", "frames_tx", "crc_errors", "length_errors", "other_errors", "seq_gaps",
            "commands_applied", "commands_ignored", "commands_rejected", "commands_stale",
            "commands_clipped", "watchdog_trips", "estops", "limit_faults")

MODES = ("disarmed", "armed", "stopping", "faulted")


def make(target: str, build: Path, *tools: str) -> Path:
    """Build ``make -C firmware_bridge/firmware TARGET`` into ``build``; skip the test when a
    tool is missing (a build folder per test session: concurrent sessions never share one)."""
    missing = [t for t in ("make", *tools) if shutil.which(t) is None]
    if missing:
        pytest.skip(f"firmware tests need {', '.join(missing)}: run 'make sysdeps' (Debian "
                    f"packages gcc, make, gcc-arm-none-eabi, libnewlib-arm-none-eabi, "
                    f"qemu-system-arm)")
    res = subprocess.run(["make", "-s", "-C", str(FIRMWARE), target, f"BUILD={build}"],
                         capture_output=True, text=True)
    if res.returncode != 0:
        raise AssertionError(f"make {target} failed:\n{res.stdout}\n{res.stderr}")
    return build / ("host/kk_harness" if target == "host" else "qemu/karakuri_fw.elf")


def f32hex(values: Sequence[float] | np.ndarray) -> str:
    """Space-separated binary32 bit patterns, 8 hex digits each."""
    return " ".join(f"{struct.unpack('<I', struct.pack('<f', float(v)))[0]:08x}"
                    for v in np.asarray(values, dtype=np.float64).ravel())


def hexf32(words: Sequence[str]) -> np.ndarray:
    """Inverse of :func:`f32hex`."""
    return np.array([struct.unpack("<f", struct.pack("<I", int(w, 16)))[0] for w in words],
                    dtype=np.float32)


class Harness:
    """One harness process (ASan + UBSan build); a context manager."""

    def __init__(self, path: Path) -> None:
        env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0:abort_on_error=1",
                   UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1")
        self.proc = subprocess.Popen([str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, bufsize=1, env=env)
        self.n = 0

    def _line(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise AssertionError(f"harness exited (rc {self.proc.wait()}): {err[-3000:]}")
        return line.rstrip("\n")

    def ask(self, cmd: str) -> str:
        """Send one command; its one-line answer."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        return self._line()

    def frames(self, cmd: str) -> list[bytes]:
        """Send RX or TICK; the frames the core sent (delimiters included)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        out = []
        while (line := self._line()) != ".":
            assert line.startswith("F "), line
            out.append(bytes.fromhex(line[2:]))
        return out

    # ------------------------------------------------------------------ the core
    def init(self, servo_us: int, state_us: int, joint_hash: int, lower: np.ndarray,
             upper: np.ndarray, vel: np.ndarray, eff: np.ndarray, decel: np.ndarray,
             q: np.ndarray) -> int:
        self.n = len(lower)
        arrays = " ".join(f32hex(a) for a in (lower, upper, vel, eff, decel, q))
        return int(self.ask(f"INIT {self.n} {servo_us} {state_us} {joint_hash} {arrays}"))

    def receive(self, data: bytes, t_us: int, q: np.ndarray, dq: np.ndarray) -> list[bytes]:
        return self.frames(f"RX {t_us} {f32hex(q)} {f32hex(dq)} {data.hex() or '-'}")

    def tick(self, t_us: int, q: np.ndarray, dq: np.ndarray, eff: np.ndarray) -> list[bytes]:
        return self.frames(f"TICK {t_us} {f32hex(q)} {f32hex(dq)} {f32hex(eff)}")

    def dump(self) -> dict[str, object]:
        """Mode, status, last_cmd_seq, counters and the servo reference."""
        w = self.ask("DUMP").split()
        assert w[0] == "S", w
        n, k = self.n, 4 + len(COUNTERS)
        d: dict[str, object] = {"mode": MODES[int(w[1])], "status": int(w[2]),
                                "last_cmd_seq": int(w[3])}
        d.update(zip(COUNTERS, map(int, w[4:k]), strict=True))
        d["q_ref"], d["v_ref"], d["tau_ff"] = (hexf32(w[k + i * n:k + (i + 1) * n])
                                               for i in range(3))
        return d

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        rc = self.proc.wait(timeout=10)
        err = self.proc.stderr.read() if self.proc.stderr else ""
        if self.proc.stdout:
            self.proc.stdout.close()
        if self.proc.stderr:
            self.proc.stderr.close()
        assert rc == 0 and "runtime error" not in err and "Sanitizer" not in err, err

    def __enter__(self) -> Harness:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
