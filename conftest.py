"""Root pytest hooks: benchmarks run only when asked for with ``--benchmark``."""

from pathlib import Path

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
