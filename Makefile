# fastcnn: every target builds its own virtual environment first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

AOT_INFO := fastcnn/kernels/_numba_aot.json
# every kernel module (the files aot.source_digest hashes), the export table and the build script
AOT_SOURCES := fastcnn/kernels/numba_kernels.py fastcnn/kernels/numba_simd.py fastcnn/kernels/numba_blocks.py \
	fastcnn/kernels/numba_conv_fwd.py fastcnn/kernels/numba_conv_bwd.py fastcnn/kernels/numba_pool.py \
	fastcnn/kernels/numba_elementwise.py fastcnn/kernels/numba_fused.py fastcnn/kernels/numba_norm.py \
	fastcnn/kernels/numba_random.py \
	fastcnn/kernels/aot.py \
	fastcnn/kernels/aot_build.py

.PHONY: venv aot test demo bench perf lint clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,mpi]'
	touch $(STAMP)

# the numba-aot backend: the kernels compiled ahead of time (needs a C compiler;
# without one the build says why and the numba-aot tests are skipped)
aot: $(AOT_INFO)

$(AOT_INFO): $(STAMP) $(AOT_SOURCES)
	-$(BIN)/python -m fastcnn.kernels.aot_build

# every run in a new random order (pytest-randomly); `make test SEED=N` repeats one
ifndef SEED
SEED := $(shell od -An -N3 -tu4 /dev/urandom | tr -d ' ')
endif

test: venv aot
	@echo "test order: --randomly-seed=$(SEED) (repeat it: make test SEED=$(SEED))"
	$(BIN)/python -m pytest -q -p randomly --randomly-seed=$(SEED)

demo: venv aot
	$(BIN)/fastcnn train

bench: venv aot
	-$(BIN)/python -m pip install -q torch==2.13.0 || echo "torch not installable here: its benchmark group is skipped"
	mkdir -p benchmarks/results
	$(BIN)/python -m pytest benchmarks --benchmark -q --benchmark-min-rounds=10 --benchmark-autosave --benchmark-json=benchmarks/results/latest.json
	$(BIN)/python benchmarks/report.py benchmarks/results/latest.json

perf: venv aot
	-$(BIN)/python -m pip install -q torch==2.13.0 || echo "torch not installable here: its rows are skipped"
	$(BIN)/python benchmarks/memory_epoch.py --images 60000
	$(BIN)/python benchmarks/startup_scaling.py
	$(BIN)/python benchmarks/flowers_run.py

lint: venv
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .benchmarks fastcnn/kernels/_numba_aot.*
