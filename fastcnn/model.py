"""``CnnModel``: the seed's API over a sequence of layers, an optimizer and a mode.

Layout is NHWC: inputs ``[mb, h, w, chn]``, kernels ``[kh, kw, xchn, ychn]``.
Training lives in ``fastcnn.train``, report lines in ``fastcnn.report``,
parameter files in ``fastcnn.params_io``.
"""

from __future__ import annotations

import contextlib
import threading
import time
import warnings
from pathlib import Path

import numpy as np

from . import distributed, kernels, params_io, phase, regularize, runtime, structure
from . import report as rep
from .chunks import check_chunks
from .hconfig import parse_hconfigs, place_output
from .kernels.ops import Ops
from .layers import build_layers
from .modes import make_mode
from .optim import make_optimizer
from .steps import plan_steps
from .train import History, run_training
from .workspace import Workspace

DTYPES = ("float32", "float64")
INITS = ("he", "seed")
#: samples per forward pass when evaluating a whole split
EVAL_CHUNK = 500


class CnnModel:
    """A CNN built from hconfigs, trained on ``dataset`` (see ``fastcnn.datasets.base``).

    Parameters
    ----------
    name : str
        Used in every report line.
    dataset : ArrayDataset-like
        Provides ``input_shape``, ``output_count``, ``mode`` and the seed's accessors.
    mode : None | 'select' | 'binary' | 'regression' | 'dual_select' | Mode
        None means ``dataset.mode``.
    hconfigs : list
        Hidden layers (``64``, ``['conv', {'ksize': 3, 'chn': 16}]``, ...); the
        output layer (full, no activation, ``dataset.output_count`` wide) is added.
    show_maps : bool
        ``visualize`` also draws the conv kernels and every conv/pool feature map.
    use_adam : bool
        With ``optimizer=None``: Adam (True) or plain SGD (False).
    backend : str
        Kernel backend for conv/pool layers (``fastcnn.kernels.BACKENDS``).
    seed : int or None
        Seeds the initial parameters; the same seed gives the same model on every backend.
    dtype : 'float32' | 'float64'
    optimizer : None, a name in ``fastcnn.optim.OPTIMIZERS`` or an optimizer object.
    init : 'he' (normal, std sqrt(gain / fan_in)), 'seed' (the book's N(0, 0.030)) or a float std.
    plot_dir : folder for the ``show_maps`` plots (default ``fastcnn_plots/<name>``).
    l2_decay, l1_decay : float >= 0
        Weight decay of every ``w``/``k`` (the book's chapter 8, ``fastcnn.regularize``): the
        cost adds ``l2_decay * sum(p**2) / 2 + l1_decay * sum(|p|)``; the update, decoupled,
        ``p -= lr * (step(g) + l2_decay * p + l1_decay * sign(p))``.
    fuse : bool
        On backends with fused kernels (numba, numba-aot), train every conv layer that is
        followed by a max or avg pooling layer as one step (``fastcnn.steps.ConvPoolStep``:
        stride-1 convs with ReLU or no activation, pooling without padding): the same
        bits, less memory traffic. False runs every layer on its own. (Only top-level layers
        fuse: a composite layer, ``serial`` ... ``custom``, is one step of its own.)
    dump_structure : bool
        Print the layer tree with shapes and parameter counts once built (the book's
        format, ``fastcnn.structure``; ``param_count`` is its total). Composite layers and
        macros: docs/composite.md.
    comm : an mpi4py communicator or None
        Train data-parallel over its ranks (``fastcnn.distributed``, docs/distributed.md): the
        same parameters on every rank, rank 0 prints; None: this process alone.
    chunks : int or None
        Cut every training batch into this many chunks whose gradients are summed in one
        fixed order (``fastcnn.chunks``): the same bits on one process as on any number of
        ranks with the same ``chunks``. None: 1 (the classic step) without ``comm``,
        ``fastcnn.chunks.DEFAULT_CHUNKS`` with one.

    Attributes
    ----------
    workspace : Workspace or None
        The conv/pool activations and activation gradients that ``compute_step``
        (and so ``train``) reuses from step to step, on backends that write into
        given outputs (``kernels.WRITES_INTO_OUT``: numba); None elsewhere, and
        setting it to None turns reuse off. ``forward``, ``predict`` and
        ``compute_gradients`` never use it: what they return is always new.
    """

    def __init__(self, name, dataset, mode=None, hconfigs=None, show_maps=False, use_adam=True, *,
                 backend="numba", seed=None, dtype="float32", optimizer=None, init="he", plot_dir=None,
                 fuse=True, l2_decay=0, l1_decay=0, dump_structure=False, comm=None, chunks=None):
        if not isinstance(name, str) or not name:
            raise TypeError(f"name must be a non-empty str, got {name!r}")
        for attr in ("input_shape", "output_count", "get_train_data", "get_test_data"):
            if not hasattr(dataset, attr):
                raise TypeError(f"dataset must provide {attr!r} (see fastcnn.datasets.base.ArrayDataset)")
        if backend not in kernels.BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; valid backends: {', '.join(kernels.BACKENDS)}")
        if str(np.dtype(dtype)) not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        if init not in INITS and (isinstance(init, (str, bool)) or not isinstance(init, (int, float))
                                  or not init > 0):
            raise ValueError(f"init must be 'he', 'seed' or a positive float std, got {init!r}")
        self.name, self.dataset, self.show_maps = name, dataset, bool(show_maps)
        self.comm, self.chunks = comm, None if chunks is None else check_chunks(chunks)
        self.backend, self.dtype, self.seed = backend, np.dtype(dtype), seed
        self.mode = make_mode(mode, dataset)
        self.plot_dir = Path(plot_dir) if plot_dir is not None else Path("fastcnn_plots") / name
        specs = place_output(parse_hconfigs(hconfigs), int(dataset.output_count))  # last, or at ['output']
        self.input_shape = tuple(dataset.input_shape)
        #: the backend, bound once: what the layers and the optimizer call (``kernels.ops``)
        self.ops = Ops.bind(backend)
        #: seeded: draws the initial parameters, then the dropout masks and noise (in that order)
        self.rng = np.random.default_rng(seed)
        self.layers = build_layers(specs, self.input_shape, ops=self.ops, dtype=self.dtype,
                                   rng=self.rng, init=init)
        #: the units the training step runs: one layer each, or a fused conv + pooling pair
        self.steps = plan_steps(self.layers, self.ops, fuse=bool(fuse))
        #: flat view of every parameter array, keyed ``layer03_conv/k`` (same arrays as the layers')
        self.params = {f"{layer.key}/{n}": a for layer in self.layers for n, a in layer.params.items()}
        self.workspace = Workspace() if self.ops.writes_into_out else None
        self._workspace_lock = threading.Lock()  # one step at a time owns the workspace
        self.optimizer = make_optimizer(optimizer, use_adam)
        if callable(getattr(self.optimizer, "bind", None)):
            self.optimizer.bind(self.ops)  # Adam: the backend's fused update
        #: L2/L1 weight decay (``fastcnn.regularize``): its rates, and the weights it decays
        self.decay = regularize.setup_decay(self, l2_decay, l1_decay)
        if dump_structure:  # the book's constructor flag: print the layer tree once built
            self.dump_structure()

    def __repr__(self) -> str:
        kinds = ", ".join(f"{la.spec.type}{list(la.output_shape)}" for la in self.layers)
        return f"CnnModel({self.name!r}, mode={self.mode.name!r}, backend={self.backend!r}, layers=[{kinds}])"

    @property
    def kernels(self) -> list[np.ndarray]:
        """Every conv layer's kernel ``[kh, kw, xchn, ychn]``, in order."""
        return [la.params["k"] for la in self.layers if "k" in la.params]

    @property
    def param_count(self) -> int:
        """The book's parameter count: weights and biases of every full and conv layer, nested
        ones included (batch-norm scale/shift and statistics are not counted; ``fastcnn.structure``)."""
        return structure.param_count(self.layers)

    def dump_structure(self, file=None) -> str:
        """Print the layer tree with shapes and parameter counts in the book's format
        (``fastcnn.structure``; default to stdout) and return the text."""
        return structure.dump_structure(self.layers, file)

    # -- forward / backward ------------------------------------------------------
    def _input(self, x) -> np.ndarray:
        """``x`` checked once per call (the layers do not check again): the model's input
        shape, dtype, C-contiguous, at least one sample."""
        x = np.ascontiguousarray(x, dtype=self.dtype)
        if x.ndim != len(self.input_shape) + 1 or x.shape[1:] != self.input_shape or x.shape[0] == 0:
            expected = ", ".join(map(str, self.input_shape))
            raise ValueError(f"input has shape {x.shape}; the model expects [mb, {expected}] with mb >= 1")
        return x

    def _threads(self):
        """On the numba backends BLAS runs single-threaded (``kernels.SINGLE_THREADED_BLAS``,
        ``fastcnn.runtime``); other backends keep BLAS's own threads."""
        single = kernels.SINGLE_THREADED_BLAS[self.backend]
        return runtime.single_threaded_blas() if single else contextlib.nullcontext()

    def forward(self, x, maps: list | None = None):
        """Output layer values ``[mb, outputs]`` and every layer's aux (for backward).

        When ``maps`` is a list, ``(label, y)`` of every conv/pool layer is appended.
        """
        return self._forward(x, maps, None)

    def _forward(self, x, maps, workspace):
        """Run the steps (with ``maps``: the layers one by one, keeping each map)."""
        auxes = []
        x = self._input(x)
        with self._threads():
            if maps is None:
                for step in self.steps:
                    x, aux = step.forward(x, workspace)
                    auxes.append(aux)
                return x, auxes
            for layer in self.layers:
                x, aux = layer.forward(x, workspace)
                auxes.append(aux)
                if layer.makes_maps:
                    maps.append((layer.key, x))
        return x, auxes

    def compute_gradients(self, x, y, *, input_grad: bool = True):
        """``(loss, grads, g_x, output)``: grads keyed like ``params``, ``g_x`` like ``x``.

        ``input_grad=False`` lets the first layer skip the gradient of the input
        (``g_x`` is then None): training never needs it.
        """
        return self._gradients(x, y, input_grad, None)

    def _gradients(self, x, y, input_grad: bool, workspace):
        with phase.training():  # dropout, noise on; batch norm on batch statistics (fastcnn.phase)
            output, auxes = self._forward(x, None, workspace)
        loss, g = self.mode.loss_grad(output, np.asarray(y, dtype=self.dtype))
        loss += self.decay.penalty(self.params)  # 0.0 without decay
        grads = {}
        with self._threads():
            for i in reversed(range(len(self.steps))):
                g, step_grads = self.steps[i].backward(g, auxes[i], input_grad or i > 0, workspace)
                grads.update(step_grads)
        return loss, grads, g, output

    def compute_step(self, x, y, *, reuse_grads: bool = False):
        """One training step without the update: ``(cost, batch accuracy, grads)``.

        The training hot loop: activations and their gradients go to
        ``workspace`` arrays reused by the next step (loss, accuracy and the
        output layer's values are new, so nothing returned is a reused array).
        ``reuse_grads=True`` puts the large parameter gradients (dense weights)
        there too: they are then valid only until the next step, which suits a
        loop that applies them at once (``train`` does). Results are
        bit-identical without a workspace.
        """
        # one BLAS limit for the whole step (the forward's and backward's own entries then nest)
        with self._threads(), self._step_workspace() as workspace:
            if workspace is not None:
                workspace.param_grads = bool(reuse_grads)
            try:
                loss, grads, _, output = self._gradients(x, y, False, workspace)
            finally:
                if workspace is not None:
                    workspace.param_grads = False
        return loss, self.mode.accuracy(output, y), grads

    @contextlib.contextmanager
    def _step_workspace(self):
        """The workspace for one step, or None: reuse off, or a step in another thread holds it."""
        workspace = self.workspace
        if workspace is None or not self._workspace_lock.acquire(blocking=False):
            yield None
            return
        try:
            yield workspace
        finally:
            self._workspace_lock.release()

    def predict(self, x) -> np.ndarray:
        """Output layer values for ``x``, evaluated in chunks."""
        x = self._input(x)
        outs = [self.forward(x[i : i + EVAL_CHUNK])[0] for i in range(0, len(x), EVAL_CHUNK)]
        return np.concatenate(outs) if outs else np.zeros((0, self.layers[-1].output_shape[0]), self.dtype)

    def get_estimate(self, x) -> np.ndarray:
        """The mode's estimate (probabilities for select modes)."""
        return self.mode.estimate(self.predict(x))

    def eval_accuracy(self, x, y):
        return self.mode.accuracy(self.predict(x), np.asarray(y))

    # -- the seed's API -----------------------------------------------------------
    def train(self, epoch_count=10, batch_size=10, learning_rate=0.001, report=0, *,
              progress=None) -> History:
        """Train with the optimizer at ``learning_rate``; print a line every ``report`` epochs.

        Sets ``optimizer.lr = learning_rate`` (also for an optimizer object passed
        in); its other state carries over between calls. Every epoch shuffles the
        training split and runs ``train_count // batch_size`` steps (with ``chunks > 1``: shard
        by shard, ``fastcnn.shards``), then scores
        100 random validation samples. ``progress``: tqdm bar over the batches
        (None: only when stderr is a terminal).

        Returns the per-epoch ``History``. Ctrl-C stops cleanly (the parameters of
        the last completed step, the history so far, ``interrupted=True``); a
        NaN/inf cost or gradient raises ``TrainingDiverged`` before that step is
        applied.
        """
        return run_training(self, epoch_count, batch_size, learning_rate, report, progress)

    def test(self):
        """Accuracy on the dataset's test split; prints the seed's test report line."""
        start = time.perf_counter()
        xs, ys = self.dataset.get_test_data()
        plan = distributed.plan_for(self)  # over MPI: rank 0 computes and prints, every rank returns it
        acc = plan.evaluate(self, xs, ys)
        with plan.quiet():
            rep.test_report(self.name, acc, time.perf_counter() - start)
        return acc

    def exec_all(self, epoch_count=10, batch_size=10, learning_rate=0.001, report=0, show_cnt=3,
                 show_params=False):
        """Train, test, then visualize ``show_cnt`` samples; returns ``(history, test_acc)``.

        ``show_params``: then also the weights' histogram (``<plot_dir>/param_dist.png``) and the
        book's "Near 0 parameters" line (``fastcnn.regularize.show_param_dist``)."""
        if isinstance(show_cnt, bool) or not isinstance(show_cnt, (int, np.integer)) or show_cnt < 0:
            raise ValueError(f"show_cnt must be an int >= 0, got {show_cnt!r}")
        history = self.train(epoch_count, batch_size, learning_rate, report)
        acc = self.test()
        if show_cnt > 0:
            self.visualize(show_cnt)
        if show_params:
            regularize.show_param_dist(self)
        return history, acc

    def visualize(self, num: int = 3) -> list[Path]:
        """Print estimates for ``num`` validation samples (one ``fastcnn.report`` line each,
        for every dataset and mode); with ``show_maps`` draw kernels and feature maps.
        Returns the plot files written."""
        plan = distributed.plan_for(self)  # over MPI: rank 0 draws and prints
        with plan.quiet():
            rep.visualize_header(self.name)
        xs, ys = self.dataset.get_validate_data(num)  # on every rank: the same random draw
        if not plan.is_root:  # its shard may hold no validation rows; rank 0 shows them
            return []
        maps = [] if self.show_maps else None
        output, _ = self.forward(xs, maps)
        est = self.mode.estimate(output)
        written = self._draw_maps(maps) if self.show_maps and plan.is_root else []
        with plan.quiet():
            rep.print_samples(self.mode, est, ys, getattr(self.dataset, "target_names", None))
        return written

    load_visualize = visualize

    def _draw_maps(self, maps) -> list[Path]:
        try:
            from . import viz
        except ImportError as exc:
            warnings.warn(f"show_maps: fastcnn.viz is unavailable ({exc}); no plots drawn", stacklevel=3)
            return []
        if not maps:  # a model without conv or pooling layers has nothing to draw
            return []
        self.plot_dir.mkdir(parents=True, exist_ok=True)
        written = []
        if self.kernels:
            written.append(viz.draw_kernels(list(self.kernels), self.plot_dir / "kernels.png"))
        written.append(viz.draw_feature_maps(maps, self.plot_dir / "feature_maps.png"))
        return [Path(p) for p in written]

    def save_params(self, path) -> Path:
        """Write every parameter to ``path`` (.npz, atomically)."""
        return params_io.save_params(self, path)

    def load_params(self, path) -> None:
        """Load parameters saved by a model of the same architecture."""
        params_io.load_params(self, path)


CnnModelBasic = CnnModel
