"""Command line: ``fastcnn train`` (a run folder with report, params and plots),
``fastcnn bench`` (a markdown table comparing the kernel backends) and
``fastcnn convert`` (weights in and out, ``fastcnn.interop``) and ``fastcnn structure``
(the book's dump_structure of a preset or hconfig, ``fastcnn.structure``)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np

from . import cli_compile, cli_models, runtime
from .rank_supervisor import supervise
from .train import TrainingDiverged
from .zoo import DEMO_TRAIN

#: ``fastcnn train`` defaults, set by measurement (one source: ``fastcnn.zoo.DEMO_TRAIN``): the digits
#: preset with Adam at 0.001, batch 32, reached test accuracy 0.970-0.985 over 10 seeds/splits after
#: 30 epochs (about 3 s of training on 2 cores)
DEFAULT_DATASET = "digits"
#: dataset -> the ``fastcnn.zoo`` preset ``--model`` defaults to
DEFAULT_MODELS = {"digits": "digits", "mnist": "simpleconvnet", "flowers": "flower", "office31": "office31"}
DEFAULT_BACKEND = "numba"
DEFAULT_EPOCHS = DEMO_TRAIN["epoch_count"]
DEFAULT_BATCH_SIZE = DEMO_TRAIN["batch_size"]
DEFAULT_LEARNING_RATE = DEMO_TRAIN["learning_rate"]
DEFAULT_REPORT = 5
DEFAULT_SHOW = 3
DEFAULT_SEED = 1
DEFAULT_RESOLUTION = (96, 96)

#: datasets read from a folder, and what the folder must hold
DATA_LAYOUTS = {
    "mnist": "a folder with train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
    "t10k-labels-idx1-ubyte (raw or .gz)",
    "flowers": "a folder of class folders of JPEGs (daisy, dandelion, rose, sunflower, tulip)",
    "office31": "a folder of domain folders, each <domain>/images/<class>/*.jpg",
}


class UsageError(Exception):
    """A bad command-line value: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors as one line and exits 2 (no usage dump)."""

    def error(self, message):
        raise UsageError(f"{message} (see '{self.prog} --help')")


# --------------------------------------------------------------------------
# argument parsing
# --------------------------------------------------------------------------


def _number(convert, accept, wording: str):
    """An argparse type: ``convert`` the text, then require ``accept(value)``."""

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {wording}, got {text!r}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"expected {wording}, got {text!r}")
        return value

    return parse


_positive_int = _number(int, lambda v: v > 0, "a positive integer")
_count = _number(int, lambda v: v >= 0, "an integer >= 0")
_positive_float = _number(float, lambda v: v > 0, "a positive number")
_decay = _number(float, lambda v: 0 <= v < float("inf"), "a number >= 0")


def _resolution(text: str) -> tuple[int, int]:
    parts = text.lower().replace(",", "x").split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) == 1:
        values *= 2
    if len(values) != 2 or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"expected SIZE or HEIGHTxWIDTH, e.g. 96 or 96x96, got {text!r}")
    return values[0], values[1]


def build_parser() -> argparse.ArgumentParser:
    from .datasets import DATASETS
    from .kernels import BACKENDS

    parser = _Parser(prog="fastcnn", description="A from-scratch CNN library with Numba CPU kernels.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    process = _Parser(add_help=False)  # options of every command
    process.add_argument("--no-process-policy", dest="process_policy", action="store_false",
                         help="leave this process as it is: no OMP_WAIT_POLICY, no allocator setting "
                         "(fastcnn.runtime, docs/runtime.md)")

    train = sub.add_parser("train", parents=[process],
                           help="train a model, write report, params and plots to a run folder")
    train.add_argument("--dataset", choices=list(DATASETS), default=DEFAULT_DATASET)
    train.add_argument("--data-path", help="dataset folder (mnist, flowers, office31); nothing downloads")
    arch = train.add_mutually_exclusive_group()
    arch.add_argument("--model", default=None, help="a preset from fastcnn.zoo (default: the dataset's, "
                      + ", ".join(f"{d}: {m}" for d, m in DEFAULT_MODELS.items()) + ")")
    arch.add_argument("--hconfig", help="hidden layers as a JSON list, or a path to a JSON file")
    train.add_argument("--mode", default=None, help="select, binary, regression or dual_select "
                       "(default: the dataset's own)")
    train.add_argument("--backend", choices=list(BACKENDS), default=DEFAULT_BACKEND)
    train.add_argument("--epochs", type=_count, default=DEFAULT_EPOCHS)
    train.add_argument("--batch-size", type=_positive_int, default=DEFAULT_BATCH_SIZE)
    train.add_argument("--learning-rate", type=_positive_float, default=DEFAULT_LEARNING_RATE)
    train.add_argument("--seed", type=int, default=DEFAULT_SEED)
    train.add_argument("--report", type=_count, default=DEFAULT_REPORT, help="report every N epochs (0: off)")
    train.add_argument("--show", type=_count, default=DEFAULT_SHOW, help="samples to visualize")
    train.add_argument("--show-maps", action="store_true", help="also draw conv kernels and feature maps")
    train.add_argument("--l2-decay", type=_decay, default=0.0,
                       help="L2 weight decay of every w/k (the book's chapter 8; docs/regularization.md)")
    train.add_argument("--l1-decay", type=_decay, default=0.0, help="L1 weight decay of every w/k")
    train.add_argument("--show-params", action="store_true",
                       help="histogram of the weights (param_dist.png) and the 'Near 0 parameters' line")
    train.add_argument("--resolution", type=_resolution, default=DEFAULT_RESOLUTION,
                       help="image size for flowers/office31, e.g. 96 or 96x96")
    train.add_argument("--limit", type=_positive_int, help="mnist: use at most N training and N test images")
    train.add_argument("--raw-pixels", action="store_true", help="feed raw 0..255 pixels (the seed's parity)")
    train.add_argument("--out", help="run folder (default: runs/<dataset>-<timestamp>)")
    train.add_argument("--dump-structure", action="store_true",
                       help="print the layer tree with shapes and parameter counts before training")
    _add_distributed_options(train)

    bench = sub.add_parser("bench", parents=[process],
                           help="compare kernel backends on a few workloads (markdown table)")
    bench.add_argument("--backends", default=None,
                       help="comma-separated backend names (default: every one that loads here, of "
                       + ", ".join(BACKENDS) + ")")
    bench.add_argument("--repeat", type=_positive_int, default=3, help="timed repeats (median reported)")
    bench.add_argument("--quick", action="store_true", help="small shapes, one repeat: a smoke run")
    cli_models.add_convert_parser(sub, process)
    cli_models.add_structure_parser(sub, process)
    cli_compile.add_compile_parser(sub, process)
    return parser


# --------------------------------------------------------------------------
# train
# --------------------------------------------------------------------------


def _add_distributed_options(train) -> None:
    """Options of data-parallel training (``mpiexec -n N fastcnn train ...``, docs/distributed.md)."""
    from .chunks import DEFAULT_CHUNKS
    from .distributed import DEFAULT_TIMEOUT

    train.add_argument("--chunks", type=_positive_int, default=DEFAULT_CHUNKS,
                       help="cut every batch into K chunks summed in one fixed order: the same params for "
                       f"any number of MPI processes up to K (default {DEFAULT_CHUNKS}; 1: the classic step)")
    train.add_argument("--threads", type=_positive_int, default=None,
                       help="kernel threads of this process (default: every core; under mpiexec, the "
                       "node's cores divided by its ranks)")
    train.add_argument("--mpi-timeout", type=_positive_float, default=DEFAULT_TIMEOUT,
                       help="under mpiexec: seconds a rank waits for the others before ending the job "
                       f"(default {DEFAULT_TIMEOUT:g})")


def _comm(args):
    """mpi4py's COMM_WORLD when this process was started by mpiexec (threads set per rank), else
    None (``--threads`` then sets this process's threads)."""
    from . import distributed

    if not distributed.launched_by_mpi():
        if args.threads is not None:
            runtime.set_num_threads(args.threads)
        return None
    return distributed.world(threads=args.threads)


def _hconfigs(args) -> tuple[str, list]:
    """``(model name, hconfigs)`` from ``--hconfig`` or the ``--model`` preset."""
    if args.hconfig is not None:
        text = args.hconfig
        path = Path(text)
        if path.suffix == ".json" or path.is_file():
            if not path.is_file():
                raise UsageError(f"--hconfig: file {path} does not exist")
            text = path.read_text()
        try:
            config = json.loads(text)
        except json.JSONDecodeError as exc:
            where = f"{exc.msg} at column {exc.colno}"
            raise UsageError(f"--hconfig: not valid JSON ({where}): {text[:60]!r}") from None
        if not isinstance(config, list):
            raise UsageError(f"--hconfig must be a JSON list of layers, got {type(config).__name__}")
        return args.dataset, config
    from .zoo import PRESETS, get_preset

    name = args.model or DEFAULT_MODELS[args.dataset]
    if name not in PRESETS:
        raise UsageError(f"--model: unknown preset {name!r}; presets: {', '.join(PRESETS)}")
    return name, get_preset(name)


def _dataset(args, comm=None):
    """The dataset; under mpiexec each rank loads only its shard (``distributed.data_shard``),
    and a load that fails on any rank fails on every rank (rank 0 prints it)."""
    from .datasets import DATASETS
    from .distributed import data_shard, load_together

    cls = DATASETS[args.dataset]
    if args.dataset != "digits" and args.data_path is None:
        raise UsageError(f"--dataset {args.dataset} needs --data-path: {DATA_LAYOUTS[args.dataset]}")
    shard = data_shard(comm, args.chunks, args.batch_size)
    if args.dataset == "digits":
        return load_together(comm, lambda: cls(normalize=not args.raw_pixels, shard=shard))
    if args.dataset == "mnist":
        return load_together(comm, lambda: cls(args.data_path, normalize=not args.raw_pixels,
                                               limit=args.limit, shard=shard))
    return load_together(comm, lambda: cls(args.data_path, args.resolution, normalize=not args.raw_pixels,
                                           shard=shard))


def _run_folder(args) -> Path:
    if args.out:
        return Path(args.out)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path("runs") / f"{args.dataset}-{stamp}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


class _Tee:
    """Write to several text streams at once (the report goes to screen and file)."""

    def __init__(self, *streams):
        self.streams = streams

    def write(self, text):
        for s in self.streams:
            s.write(text)
        return len(text)

    def flush(self):
        for s in self.streams:
            s.flush()


def first_kernel(model) -> np.ndarray | None:
    """The first conv layer's kernel ``[kh, kw, xchn, ychn]`` (a copy), or None."""
    return np.array(model.kernels[0], copy=True) if model.kernels else None


def _json_ready(value):
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def _draw_plots(model, ds, history, before, run: Path, args) -> list[Path]:
    from . import viz

    written = [viz.plot_history(history, run / "history.png", title=f"{model.name} on {ds.name}")]
    after = first_kernel(model)
    if before is not None and after is not None:
        for kernel, when in ((before, "before"), (after, "after")):
            title = f"first-layer filters, {when} training"
            written.append(viz.draw_filter_grid(kernel, run / f"filters_{when}.png", title))
        written.append(viz.apply_filters_to_photo(after, run / "filters_on_photo.png", backend=args.backend))
    if args.show > 0:
        xs, ys = ds.get_validate_data(max(args.show, 8))
        est = model.get_estimate(xs)
        path = run / "samples.png"
        written.append(viz.draw_samples(xs, est, ys, ds.target_names, path, mode=model.mode.name))
    if args.show_maps:
        if args.show == 0:  # the model draws these while visualizing (plot_dir=run); here it did not
            xs, _ = ds.get_validate_data(3)
            maps = []
            model.forward(xs, maps)
            if model.kernels:
                viz.draw_kernels(list(model.kernels), run / "kernels.png")
            if maps:
                viz.draw_feature_maps(maps, run / "feature_maps.png")
        written += [p for p in (run / "kernels.png", run / "feature_maps.png") if p.is_file()]
    return written


def cmd_train(args) -> int:
    from . import CnnModel, distributed

    name, hconfigs = _hconfigs(args)
    try:
        comm = _comm(args)  # under mpiexec: every rank runs this command, rank 0 writes the run folder
        ds = _dataset(args, comm)
        run = _run_folder(args)
        model = CnnModel(name, ds, args.mode, hconfigs, show_maps=args.show_maps, backend=args.backend,
                         seed=args.seed, plot_dir=run, l2_decay=args.l2_decay, l1_decay=args.l1_decay,
                         comm=comm, chunks=args.chunks)
        model.comm_timeout = args.mpi_timeout
        distributed.plan_for(model).check(model, args.batch_size)  # e.g. more ranks than chunks
    except (ValueError, TypeError, KeyError, OSError, ImportError) as exc:  # ImportError: numba-aot not built
        raise UsageError(str(exc)) from None
    if comm is not None and comm.Get_rank() != 0:
        return distributed.train_command(model, args)
    run.mkdir(parents=True, exist_ok=True)
    before = first_kernel(model)
    started = time.perf_counter()
    with open(run / "report.txt", "w", encoding="utf-8") as log, contextlib.redirect_stdout(
        _Tee(sys.stdout, log)
    ):
        print(f"fastcnn train: dataset {ds!r}, model {name!r}, backend {args.backend}, "
              f"epochs {args.epochs}, batch {args.batch_size}, learning rate {args.learning_rate}")
        if args.dump_structure:
            model.dump_structure()
        if comm is not None:
            print(f"data-parallel over {comm.Get_size()} MPI processes, {args.chunks} chunks per batch, "
                  f"{runtime.num_threads()} threads each; each rank loads only its shard")
        history, test_acc = model.exec_all(
            args.epochs, args.batch_size, args.learning_rate, args.report, args.show,
            show_params=args.show_params,
        )
        if comm is not None:
            distributed.plan_for(model).same_params(model)
        print(f"wall time {time.perf_counter() - started:.1f} secs")
    model.save_params(run / "params.npz")
    summary = {"dataset": args.dataset, "model": name, "hconfigs": hconfigs, "backend": args.backend,
               "epochs": args.epochs, "batch_size": args.batch_size, "learning_rate": args.learning_rate,
               "seed": args.seed, "l2_decay": args.l2_decay, "l1_decay": args.l1_decay,
               "test_acc": test_acc, "history": history.to_dict()}
    (run / "history.json").write_text(json.dumps(_json_ready(summary), indent=2))
    written = [run / "report.txt", run / "params.npz", run / "history.json"]
    written += _draw_plots(model, ds, history, before, run, args)
    written += [run / "param_dist.png"] if args.show_params and (run / "param_dist.png").is_file() else []
    print(f"wrote {len(written)} files to {run}: {', '.join(p.name for p in written)}")
    return 0


# --------------------------------------------------------------------------
# bench
# --------------------------------------------------------------------------

def cmd_bench(args) -> int:
    from .bench import REDUCED_BATCH, bench_rows, format_table
    from .kernels import BACKENDS, backend_available, get_backend

    if args.backends is None:
        backends = [b for b in BACKENDS if backend_available(b)]
    else:
        backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown or not backends:
        bad = ", ".join(unknown) or "(empty)"
        raise UsageError(f"--backends: unknown {bad}; valid: {', '.join(BACKENDS)}")
    for name in backends:
        try:
            get_backend(name)
        except ImportError as exc:
            raise UsageError(f"--backends: {name}: {exc}") from None
    repeat = 1 if args.quick else args.repeat
    rows = bench_rows(backends, repeat, args.quick)
    print(f"fastcnn bench: float32, median of {repeat} after one warm-up call, "
          f"{os.cpu_count()} CPUs, NUMBA_NUM_THREADS={os.environ.get('NUMBA_NUM_THREADS', 'default')}")
    print()
    print(format_table(rows, backends))
    if len(backends) > 1:
        print(f"\n'<b> / {backends[0]}': time ratio, how many times faster {backends[0]} is than <b>")
    if any(t[1] for row in rows for t in row["times"].values()):
        small = ", ".join(f"{b} {n}" for b, n in REDUCED_BATCH.items() if b in backends)
        print(f"\n* timed on a reduced batch ({small} images) and scaled to the full batch per image")
    return 0


COMMANDS = {"train": cmd_train, "bench": cmd_bench, "convert": cli_models.cmd_convert,
            "structure": cli_models.cmd_structure, "compile": cli_compile.cmd_compile}


def apply_process_policy(args) -> None:
    """The command owns its process: apply ``fastcnn.runtime``'s policy, or switch it off
    (``--no-process-policy``) so that training does not apply it either."""
    if args.process_policy:
        runtime.apply_policy()
    else:
        runtime.set_policy(enabled=False)


def _print_error(exc) -> None:
    """One error line; under mpiexec only rank 0's (every rank meets the same bad option or NaN)."""
    from .distributed import launcher_rank

    if launcher_rank() in (None, 0):
        print(f"fastcnn: error: {exc}", file=sys.stderr)


def main(argv=None) -> int:
    """Entry point of the ``fastcnn`` command; bad arguments exit with status 2."""
    try:
        args = build_parser().parse_args(argv)
        if args.command == "train" and argv is None:
            supervise()  # under mpiexec: this process becomes the rank's parent (rank_supervisor)
        apply_process_policy(args)
        return COMMANDS[args.command](args)
    except UsageError as exc:
        _print_error(exc)
        raise SystemExit(2) from None
    except TrainingDiverged as exc:
        _print_error(exc)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        print("fastcnn: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except BrokenPipeError:  # e.g. `fastcnn bench | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(1) from None
