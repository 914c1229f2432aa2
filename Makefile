# Two commands for a fresh machine:
#   make demo   set up, then train reach on CPU, export it, deploy it sim-in-the-loop
#   make test   set up, then run the tests (what CI runs)
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXTRAS ?= sim,train,dev,ros2

.PHONY: setup demo test test-all lint clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[$(EXTRAS)]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/karakuri demo

test: $(STAMP)
	$(BIN)/python -m pytest -m "not gpu" -q

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) runs
