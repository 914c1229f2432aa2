# Two commands for a fresh machine:
#   make demo   set up, then train reach on CPU, export it, deploy it sim-in-the-loop
#   make test   set up, then run the tests (what CI runs)
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXTRAS ?= sim,train,dev,ros2

.PHONY: setup demo test test-all lint bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[$(EXTRAS)]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/karakuri demo

# The default run: everything but slow and GPU tests; ROS 2 tests run over loopback DDS.
test: $(STAMP)
	$(BIN)/python -m pytest -m "not gpu and not slow" -q

# Slow tests too (warp on CPU, longer training), still no GPU.
test-all: $(STAMP)
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
