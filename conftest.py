"""Root pytest hooks: benchmarks run only when asked for with ``--benchmark``; numba compiles in process."""

import os
from pathlib import Path

# the suites test numba's JIT kernels in the process: a cold cache compiles them here, as
# ``FASTCNN_COLD_START=compile`` says (the prebuilt first run has its own tests, test_tiered.py)
os.environ.setdefault("FASTCNN_COLD_START", "compile")

BENCH_DIR = Path(__file__).parent / "benchmarks"


def pytest_addoption(parser):
    parser.addoption(
        "--benchmark",
        action="store_true",
        default=False,
        help="collect and run the benchmark suite in benchmarks/ (skipped otherwise)",
    )


def pytest_ignore_collect(collection_path, config):
    if config.getoption("--benchmark"):
        return None
    path = Path(collection_path)
    if path == BENCH_DIR or BENCH_DIR in path.parents:
        return True
    return None
