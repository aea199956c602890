"""Parse the seed's hidden-layer grammar into validated layer specs.

``10`` is a fully connected layer of width 10; ``['conv', {'ksize': 3, 'chn': 12}]``
names a layer type and its settings. This module checks the grammar (types, keys,
value types); checks that need the input shape (window sizes, flat inputs) run
when the layers are built (see ``fastcnn.layers``). Every error names the layer
index, its type and the key at fault.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .checks import is_int
from .regularize import CHECKS as REGULARIZATION_CHECKS

#: layer type -> the keys it accepts (``actfunc`` is accepted everywhere)
LAYER_KEYS: dict[str, tuple[str, ...]] = {
    "full": ("width", "actfunc"),
    "conv": ("ksize", "chn", "stride", "padding", "actfunc", "actions"),
    "max": ("stride", "ksize", "padding", "actfunc"),
    "avg": ("stride", "ksize", "padding", "actfunc"),
    # composite layers (``fastcnn.macros.parse_composite``): [type, {options}, child, child, ...]
    "serial": (),
    "parallel": (),
    "add": ("x", "actions", "actfunc"),
    "loop": ("repeat",),
    "custom": ("name", "args"),
}
# the book's chapter 8 leaf layers (no activation) and the output-layer marker
# (fastcnn.regularize has their grammar and checks)
LAYER_KEYS.update({
    "dropout": ("keep_prob",),
    "noise": ("type", "mean", "std", "ratio"),
    "batch_normal": ("rescale", "epsilon", "exp_ratio", "exact"),
    "output": (),
})

#: activation used when a layer does not name one: the seed's relu for layers
#: with weights; pooling layers apply none (the seed's pooling never activates)
DEFAULT_ACTFUNC = {"full": "relu", "conv": "relu", "max": "none", "avg": "none",
                   "serial": "none", "parallel": "none", "add": "relu", "loop": "none", "custom": "none"}

#: the composite layer types: their lists hold child layers from index 1 or 2 on
COMPOSITE_TYPES = ("serial", "parallel", "add", "loop", "custom")
DEFAULT_ACTFUNC.update({"dropout": "none", "noise": "none", "batch_normal": "none", "output": "none"})

#: layer types that may follow an ``['output']`` marker (shape-preserving, no weights)
AFTER_OUTPUT = ("dropout", "noise", "batch_normal")


@dataclass(frozen=True)
class LayerSpec:
    """One hidden layer as the user asked for it, with its position.

    A layer inside a composite layer keeps the top-level ``index`` and adds its
    positions below it in ``path`` (``layer 3.1.0``); ``parent`` is the enclosing
    layer's ``key`` (set when the tree is built), ``macro`` the innermost macro
    it was expanded from, ``children`` a composite's child specs.
    """

    index: int
    type: str
    settings: dict = field(default_factory=dict)
    path: tuple = ()
    parent: str = ""
    macro: str = ""
    children: tuple = ()

    @property
    def label(self) -> str:
        """``layer 2 ('conv')``, ``layer 2.1.0 ('conv') in macro 'rf'``: how errors name this layer."""
        where = ".".join(str(i) for i in (self.index, *self.path))
        return f"layer {where} ({self.type!r})" + (f" in macro {self.macro!r}" if self.macro else "")

    @property
    def key(self) -> str:
        """``layer03_conv``; inside a composite ``layer03_serial/1_parallel/0_conv`` (unique, stable)."""
        if self.parent:
            return f"{self.parent}/{self.path[-1]}_{self.type}"
        return f"layer{self.index:02d}_{self.type}"

    @property
    def actfunc(self) -> str:
        return self.settings.get("actfunc", DEFAULT_ACTFUNC[self.type])

    def error(self, key: str | None, message: str, kind=ValueError) -> Exception:
        """Build an exception that names this layer and ``key``."""
        where = f"hconfig {self.label}" + (f", key {key!r}" if key else "")
        return kind(f"{where}: {message}")


def normalize_hconfigs(hconfigs) -> list:
    """Return the hconfig list, wrapping a single ``[type, {...}]`` as the seed does."""
    if hconfigs is None:
        return []
    if isinstance(hconfigs, tuple):
        hconfigs = list(hconfigs)
    if not isinstance(hconfigs, list):
        if is_int(hconfigs):
            return [hconfigs]
        raise TypeError(f"hconfigs must be a list of layer configs, got {type(hconfigs).__name__}")
    if hconfigs and isinstance(hconfigs[0], str):
        return [hconfigs]
    return hconfigs


def parse_hconfigs(hconfigs) -> list[LayerSpec]:
    """Validate every hconfig's grammar and return one ``LayerSpec`` per layer."""
    return [parse_one(i, h) for i, h in enumerate(normalize_hconfigs(hconfigs))]


def parse_one(index: int, hconfig, *, path: tuple = (), stack: tuple = ()) -> LayerSpec:
    """Validate one hconfig: ``int`` width, ``[type, {settings}]`` or a composite
    ``[type, {options}, child, ...]``. ``path`` places a child inside its top-level layer
    ``index``; ``stack`` names the macros being expanded around it (innermost last)."""
    macro = stack[-1] if stack else ""
    where = "hconfig layer " + ".".join(str(i) for i in (index, *path))
    where += f" in macro {macro!r}" if macro else ""
    if is_int(hconfig):
        spec = LayerSpec(index, "full", {"width": int(hconfig)}, path=path, macro=macro)
        _check_settings(spec)
        return spec
    if isinstance(hconfig, tuple):
        hconfig = list(hconfig)
    if (not isinstance(hconfig, list) or not hconfig
            or (len(hconfig) > 2 and hconfig[0] not in COMPOSITE_TYPES)):
        raise TypeError(f"{where}: expected an int width or [type, {{settings}}], got {hconfig!r}")
    ltype = hconfig[0]
    if not isinstance(ltype, str) or ltype not in LAYER_KEYS:
        raise ValueError(f"{where}: unknown layer type {ltype!r}; valid types: {', '.join(LAYER_KEYS)}")
    if ltype in COMPOSITE_TYPES:
        from .macros import parse_composite  # here: fastcnn.macros imports this module

        return parse_composite(index, hconfig, path, stack)
    settings = hconfig[1] if len(hconfig) == 2 else {}
    if not isinstance(settings, dict):
        raise TypeError(f"{where} ({ltype!r}): settings must be a dict, got {type(settings).__name__}")
    spec = LayerSpec(index, ltype, dict(settings), path=path, macro=macro)
    _check_settings(spec)
    return spec


def _check_settings(spec: LayerSpec) -> None:
    valid = LAYER_KEYS[spec.type]
    for key in spec.settings:
        if key not in valid:
            raise spec.error(key, f"unknown key; valid keys for {spec.type!r}: {', '.join(valid)}")
    CHECKS[spec.type](spec)
    from .layers.activations import ACTIVATIONS  # here: fastcnn.layers imports this module

    act = spec.actfunc
    if not isinstance(act, str) or act not in ACTIVATIONS:
        raise spec.error("actfunc", f"unknown activation {act!r}; valid: {', '.join(ACTIVATIONS)}")


def _check_full(spec: LayerSpec) -> None:
    positive_int(spec, "width")


def _check_conv(spec: LayerSpec) -> None:
    pair(spec, "ksize")
    positive_int(spec, "chn")
    pair(spec, "stride", 1)
    padding(spec, "same")
    actions(spec, "LA", "LAB")


def _check_pool(spec: LayerSpec) -> None:
    if "stride" not in spec.settings and "ksize" not in spec.settings:
        raise spec.error("stride", "missing: pooling needs a 'stride' (and optionally a 'ksize')")
    pair(spec, "stride", spec.settings.get("ksize"))
    pair(spec, "ksize", spec.settings.get("stride"))
    padding(spec, "valid")


CHECKS = {"full": _check_full, "conv": _check_conv, "max": _check_pool, "avg": _check_pool}
CHECKS.update(REGULARIZATION_CHECKS)


# -- typed getters, shared with the layers ----------------------------------


def positive_int(spec: LayerSpec, key: str, default=None) -> int:
    """``settings[key]`` as a positive int (``default`` when absent)."""
    value = spec.settings.get(key, default)
    if value is None:
        raise spec.error(key, "missing; it must be a positive int")
    if not is_int(value):
        raise spec.error(key, f"must be a positive int, got {value!r}", TypeError)
    if value <= 0:
        raise spec.error(key, f"must be positive, got {value}")
    return int(value)


def pair(spec: LayerSpec, key: str, default=None) -> tuple[int, int]:
    """``settings[key]`` (int or ``[h, w]``) as a pair of positive ints."""
    value = spec.settings.get(key, default)
    if value is None:
        raise spec.error(key, "missing; it must be a positive int or an [h, w] pair")
    items = list(value) if isinstance(value, (list, tuple)) else [value, value]
    if len(items) != 2 or not all(is_int(v) for v in items):
        raise spec.error(key, f"must be a positive int or an [h, w] pair of ints, got {value!r}", TypeError)
    if min(items) <= 0:
        raise spec.error(key, f"must be positive, got {value!r}")
    return int(items[0]), int(items[1])


def actions(spec: LayerSpec, default: str, letters: str) -> str:
    """``settings['actions']``: a string of distinct ``letters`` (conv: ``'LA'`` by default,
    ``L`` conv, ``A`` activation, ``B`` batch_normal; add: ``A`` and ``B``), run left to right.
    Unknown or repeated letters are errors (the book ignored the one, kept the last of the other);
    a conv's actions must hold ``L``."""
    value = spec.settings.get("actions", default)
    if not isinstance(value, str):
        raise spec.error("actions", f"must be a string of the letters {', '.join(letters)}, got {value!r}",
                         TypeError)
    unknown = sorted(set(value) - set(letters))
    if unknown:
        raise spec.error("actions", f"unknown letter(s) {', '.join(map(repr, unknown))} in {value!r}; "
                         f"valid letters: {', '.join(letters)}")
    repeated = sorted({c for c in value if value.count(c) > 1})
    if repeated:
        raise spec.error("actions", f"letter(s) {', '.join(map(repr, repeated))} repeated in {value!r}; "
                         "each may appear once")
    if "L" in letters and "L" not in value:
        raise spec.error("actions", f"{value!r} has no 'L': a conv layer must convolve "
                         "(use a 'batch_normal' layer or an activation on its own)")
    return value


def padding(spec: LayerSpec, default: str):
    """``settings['padding']``: ``'same'``, ``'valid'``, an int >= 0 or an ``[h, w]`` pair."""
    value = spec.settings.get("padding", default)
    if isinstance(value, str):
        if value.lower() not in ("same", "valid"):
            raise spec.error("padding", f"must be 'same', 'valid', an int or [h, w], got {value!r}")
        return value.lower()
    items = list(value) if isinstance(value, (list, tuple)) else [value, value]
    if len(items) != 2 or not all(is_int(v) for v in items):
        raise spec.error("padding", f"must be 'same', 'valid', an int or [h, w], got {value!r}", TypeError)
    if min(items) < 0:
        raise spec.error("padding", f"must be non-negative, got {value!r}")
    return tuple(int(v) for v in items)


def place_output(specs: list[LayerSpec], width: int) -> list[LayerSpec]:
    """``specs`` with the model's output layer (full, ``width`` wide, no activation) in place.

    Without an ``['output']`` marker it goes last, as in the seed. With one, it takes the
    marker's place (and index), and the layers after it run on its values: only
    shape-preserving layers without weights (``AFTER_OUTPUT``), e.g. Deep Learning from
    Scratch's dropout after its last affine layer.
    """
    marks = [s for s in specs if s.type == "output"]
    output = {"width": int(width), "actfunc": "none"}
    if not marks:
        return [*specs, LayerSpec(len(specs), "full", output)]
    if len(marks) > 1:
        raise marks[1].error(None, f"a second output marker (the first is layer {marks[0].index})")
    mark = marks[0]
    for spec in specs[mark.index + 1:]:
        if spec.type not in AFTER_OUTPUT:
            raise spec.error(None, f"cannot follow the output layer (layer {mark.index}); "
                             f"only {', '.join(AFTER_OUTPUT)} can")
    return [LayerSpec(s.index, "full", output) if s is mark else s for s in specs]
