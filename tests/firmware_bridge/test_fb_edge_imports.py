"""The edge runtime's part of firmware_bridge imports without torch or MuJoCo."""

from __future__ import annotations

import subprocess
import sys

EDGE_MODULES = ("codec", "messages", "protocol", "host_core", "mcu_core", "fault_channel",
                "fault_proxy", "virtual_mcu_config", "serial_link")

SCRIPT = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "mujoco"):
            raise ImportError(f"{{name}} is not on the edge box")
sys.meta_path.insert(0, Block())
import importlib
for m in {EDGE_MODULES!r}:
    importlib.import_module("karakuri.firmware_bridge." + m)
importlib.import_module("karakuri.launch.commands.bench_link")
bad = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "mujoco"))
print("ok" if not bad else bad)
"""


def test_edge_modules_import_without_torch_or_mujoco():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
