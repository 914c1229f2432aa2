"""The reference MCU firmware in C (``firmware_bridge/firmware``) and its QEMU board launcher.

The C sources build with ``make -C firmware_bridge/firmware`` (docs/firmware.md); this
package holds only the Python that starts the emulated board (:mod:`.qemu`).
"""
