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

#: layer type -> the keys it accepts (``actfunc`` is accepted everywhere)
LAYER_KEYS: dict[str, tuple[str, ...]] = {
    "full": ("width", "actfunc"),
    "conv": ("ksize", "chn", "stride", "padding", "actfunc"),
    "max": ("stride", "ksize", "padding", "actfunc"),
    "avg": ("stride", "ksize", "padding", "actfunc"),
}

#: activation used when a layer does not name one: the seed's relu for layers
#: with weights; pooling layers apply none (the seed's pooling never activates)
DEFAULT_ACTFUNC = {"full": "relu", "conv": "relu", "max": "none", "avg": "none"}


@dataclass(frozen=True)
class LayerSpec:
    """One hidden layer as the user asked for it, with its position."""

    index: int
    type: str
    settings: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        """``layer 2 ('conv')``: how errors name this layer."""
        return f"layer {self.index} ({self.type!r})"

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


def parse_one(index: int, hconfig) -> LayerSpec:
    """Validate one hconfig: ``int`` width or ``[type, {settings}]``."""
    if is_int(hconfig):
        spec = LayerSpec(index, "full", {"width": int(hconfig)})
        _check_settings(spec)
        return spec
    if isinstance(hconfig, tuple):
        hconfig = list(hconfig)
    if not isinstance(hconfig, list) or not hconfig or len(hconfig) > 2:
        raise TypeError(
            f"hconfig layer {index}: expected an int width or [type, {{settings}}], got {hconfig!r}"
        )
    ltype = hconfig[0]
    if not isinstance(ltype, str) or ltype not in LAYER_KEYS:
        raise ValueError(
            f"hconfig layer {index}: unknown layer type {ltype!r}; valid types: {', '.join(LAYER_KEYS)}"
        )
    settings = hconfig[1] if len(hconfig) == 2 else {}
    if not isinstance(settings, dict):
        raise TypeError(
            f"hconfig layer {index} ({ltype!r}): settings must be a dict, got {type(settings).__name__}"
        )
    spec = LayerSpec(index, ltype, dict(settings))
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


def _check_pool(spec: LayerSpec) -> None:
    if "stride" not in spec.settings and "ksize" not in spec.settings:
        raise spec.error("stride", "missing: pooling needs a 'stride' (and optionally a 'ksize')")
    pair(spec, "stride", spec.settings.get("ksize"))
    pair(spec, "ksize", spec.settings.get("stride"))
    padding(spec, "valid")


CHECKS = {"full": _check_full, "conv": _check_conv, "max": _check_pool, "avg": _check_pool}


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
