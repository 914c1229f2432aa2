"""Fixtures of the firmware tests: the host harness and the QEMU image, built once by make."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fw_harness import Harness, make


@pytest.fixture(scope="session")
def harness_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The C core's harness, built with ASan and UBSan (skips without a C compiler)."""
    return make("host", tmp_path_factory.mktemp("fw-build"), "cc")


@pytest.fixture()
def harness(harness_bin: Path) -> Iterator[Harness]:
    """A fresh harness process; closing it asserts a clean exit under the sanitizers."""
    with Harness(harness_bin) as h:
        yield h


@pytest.fixture(scope="session")
def firmware_elf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The firmware for QEMU mps2-an386 (skips without the ARM toolchain or QEMU)."""
    return make("qemu", tmp_path_factory.mktemp("fw-build"), "arm-none-eabi-gcc",
                "qemu-system-arm")
