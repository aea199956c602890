# fastcnn: every target builds its own virtual environment first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv test demo bench perf lint clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

test: venv
	$(BIN)/python -m pytest -q

demo: venv
	$(BIN)/fastcnn train

bench: venv
	-$(BIN)/python -m pip install -q torch==2.13.0 || echo "torch not installable here: its benchmark group is skipped"
	mkdir -p benchmarks/results
	$(BIN)/python -m pytest benchmarks --benchmark -q --benchmark-min-rounds=10 --benchmark-autosave --benchmark-json=benchmarks/results/latest.json
	$(BIN)/python benchmarks/report.py benchmarks/results/latest.json

perf: venv
	-$(BIN)/python -m pip install -q torch==2.13.0 || echo "torch not installable here: its rows are skipped"
	$(BIN)/python benchmarks/memory_epoch.py --images 60000
	$(BIN)/python benchmarks/startup_scaling.py
	$(BIN)/python benchmarks/flowers_run.py

lint: venv
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .benchmarks
