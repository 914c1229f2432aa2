# Two commands for a fresh machine:
#   make demo   set up, then train reach on CPU, export it, deploy it sim-in-the-loop
#   make test   set up, then run the tests (what CI runs)
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXTRAS ?= sim,train,dev,ros2,gpu
comma := ,
# Without the gpu extra the warp and rsl_rl tests skip, saying so; with it, a missing package
# is a test failure (CI installs it: MuJoCo Warp and warp run on the CPU at tiny sizes).
ifeq ($(filter gpu,$(subst $(comma), ,$(EXTRAS))),)
export KARAKURI_NO_GPU_EXTRA := 1
endif
# Warp's compiled kernels live in the venv: built once per venv, shared by every test of a
# run and by later runs, gone with `make clean`.
WARP_CACHE_PATH ?= $(abspath $(VENV))/warp-cache
export WARP_CACHE_PATH

.PHONY: setup sysdeps demo test test-all lint bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[$(EXTRAS)]"
	touch $(STAMP)

setup: $(STAMP)

# OS packages of the reference firmware (docs/firmware.md): the ARM toolchain and QEMU.
# Installed once, only when missing, as root or through password-less sudo; where that is
# impossible the firmware tests skip and say why.
sysdeps:
	@if command -v qemu-system-arm >/dev/null && command -v arm-none-eabi-gcc >/dev/null && \
	    test -f "$$(arm-none-eabi-gcc -print-file-name=libc_nano.a)"; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then sudo=""; \
	elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo="sudo -n"; \
	else echo "sysdeps: not root and no password-less sudo: firmware tests will skip"; exit 0; fi; \
	if ! command -v apt-get >/dev/null; then \
	    echo "sysdeps: no apt-get; install qemu-system-arm and the arm-none-eabi toolchain"; exit 0; fi; \
	$$sudo apt-get update -q && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q qemu-system-arm \
	    gcc-arm-none-eabi libnewlib-arm-none-eabi || echo "sysdeps: install failed: firmware tests will skip"

demo: $(STAMP) sysdeps
	$(BIN)/karakuri demo

# The default run: everything but slow and GPU tests; ROS 2 tests run over loopback DDS, the
# warp backend on warp's CPU device and rsl_rl at tiny sizes (docs/gpu.md section 9).
test: $(STAMP) sysdeps
	$(BIN)/python -m pytest -m "not gpu and not slow" -q

# Slow tests too (warp on CPU, longer training), still no GPU.
test-all: $(STAMP) sysdeps
	$(BIN)/python -m pytest -m "not gpu" -q

# The benchmarks the README quotes (each prints its same-run baseline and the ratio).
bench: $(STAMP)
	$(BIN)/karakuri bench sim
	$(BIN)/karakuri bench loop --seconds 60
	$(BIN)/karakuri bench link
	$(BIN)/karakuri bench inference --mlp 256,128,64

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) runs
