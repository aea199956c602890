"""Composite layers in the hconfig grammar, and the macro table behind ``custom``.

A composite layer is ``[type, {options}, child, child, ...]`` (the options dict
may be left out: children then start at index 1). The types are ``serial``,
``parallel``, ``add`` (options ``x``, ``actions``, ``actfunc``), ``loop``
(``repeat``) and ``custom`` (``name``, ``args``), as in the book's chapter 9.
``parse_composite`` validates one such list, its children recursively, and
expands ``custom`` layers from the macro table; nothing the caller passed is
modified.

The macro table is process-wide, as the book's class-level dict: the book's
own macros (``fastcnn.book_macros``) are there from the start, ``set_macro``
adds or replaces one. ``get_macro(name, args)`` returns a fresh copy with
every ``'#x'`` string value replaced by ``args['#x']`` (``'##x'`` escapes to
``'#x'``). Unlike the book, an argument that is not given, a bare ``'#'`` and
a macro that expands into itself are errors naming the layer and key, and
tuples are substituted too. Dict keys are never substituted.
"""

from __future__ import annotations

import copy
from dataclasses import replace

from .book_macros import BOOK_MACROS
from .checks import is_int
from .hconfig import LAYER_KEYS, LayerSpec, actions, parse_one

#: macro name -> hconfig (a single layer, usually a composite); see ``set_macro``
MACROS: dict[str, object] = copy.deepcopy(BOOK_MACROS)


class MacroError(ValueError):
    """A macro that cannot be expanded (raised with the layer and key at fault)."""


def set_macro(name: str, config) -> None:
    """Store ``config`` (copied) as the macro ``name``, replacing any earlier one."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"macro name must be a non-empty str, got {name!r}")
    MACROS[name] = copy.deepcopy(config)


def get_macro(name: str, args: dict | None = None):
    """A fresh copy of the macro ``name`` with its ``'#x'`` values replaced from ``args``."""
    if name not in MACROS:
        raise MacroError(f"unknown macro {name!r}; known macros: {', '.join(sorted(MACROS))}")
    return substitute(MACROS[name], args or {}, name)


def substitute(value, args: dict, name: str = "?"):
    """``value`` with every ``'#x'`` string replaced by a copy of ``args['#x']``, walking
    lists, tuples and dict values (never keys); ``'##x'`` becomes ``'#x'``."""
    if isinstance(value, str):
        if value.startswith("##"):
            return value[1:]
        if value.startswith("#"):
            if value == "#":
                raise MacroError(f"macro {name!r}: a bare '#' is not an argument name (write '##' for '#')")
            if value not in args:
                given = ", ".join(map(repr, args)) or "none"
                raise MacroError(f"macro {name!r}: argument {value!r} is not given (args given: {given})")
            return copy.deepcopy(args[value])
        return value
    if isinstance(value, list):
        return [substitute(v, args, name) for v in value]
    if isinstance(value, tuple):
        return tuple(substitute(v, args, name) for v in value)
    if isinstance(value, dict):
        return {k: substitute(v, args, name) for k, v in value.items()}
    return copy.deepcopy(value)


# -- the grammar of composite layers --------------------------------------------------


def parse_composite(index: int, hconfig: list, path: tuple, stack: tuple) -> LayerSpec:
    """Validate ``[type, {options}, child, ...]`` and its children: a ``LayerSpec`` whose
    ``children`` hold the child specs (for ``custom``: the expanded macro, one child)."""
    ltype = hconfig[0]
    rest = list(hconfig[1:])
    options = rest.pop(0) if rest and isinstance(rest[0], dict) else {}
    spec = LayerSpec(index, ltype, dict(options), path=path, macro=stack[-1] if stack else "")
    valid = LAYER_KEYS[ltype]
    for key in spec.settings:
        if key not in valid:
            raise spec.error(key, f"unknown key; valid keys for {ltype!r}: {', '.join(valid) or 'none'}")
    if ltype == "custom":
        if rest:
            raise spec.error(None, f"takes no child layers (got {len(rest)}); its macro is its content")
        return _parse_custom(spec, stack)
    if not rest:
        raise spec.error(None, "needs at least one child layer after its options")
    CHECKS[ltype](spec, rest)
    children = tuple(parse_one(index, child, path=(*path, i), stack=stack) for i, child in enumerate(rest))
    return replace(spec, children=children)


def _check_add(spec: LayerSpec, rest: list) -> None:
    x = spec.settings.get("x", True)
    if not isinstance(x, bool):
        raise spec.error("x", f"must be True or False, got {x!r}", TypeError)
    actions(spec, "", "AB")
    from .layers.activations import ACTIVATIONS  # here: fastcnn.layers imports this module

    if spec.actfunc not in ACTIVATIONS:
        raise spec.error("actfunc", f"unknown activation {spec.actfunc!r}; valid: {', '.join(ACTIVATIONS)}")


def _check_loop(spec: LayerSpec, rest: list) -> None:
    repeat = spec.settings.get("repeat", 1)
    if not is_int(repeat):
        raise spec.error("repeat", f"must be an int >= 1, got {repeat!r}", TypeError)
    if repeat < 1:
        raise spec.error("repeat", f"must be >= 1, got {repeat}")
    if len(rest) != 1:
        raise spec.error(None, f"repeats exactly one child layer, got {len(rest)} "
                         "(wrap several in ['serial', ...])")


def _check_none(spec: LayerSpec, rest: list) -> None:
    pass


CHECKS = {"serial": _check_none, "parallel": _check_none, "add": _check_add, "loop": _check_loop}


def _parse_custom(spec: LayerSpec, stack: tuple) -> LayerSpec:
    name = spec.settings.get("name")
    if name is None:
        raise spec.error("name", "missing: custom needs the name of a macro")
    if not isinstance(name, str) or name not in MACROS:
        raise spec.error("name", f"unknown macro {name!r}; known macros: {', '.join(sorted(MACROS))}")
    if name in stack:
        chain = " -> ".join((*stack[stack.index(name):], name))
        raise spec.error("name", f"macro {name!r} expands into itself ({chain})")
    args = spec.settings.get("args", {})
    if not isinstance(args, dict):
        raise spec.error("args", f"must be a dict of '#name': value, got {type(args).__name__}", TypeError)
    try:
        expanded = get_macro(name, args)
    except MacroError as exc:
        raise spec.error("args", str(exc)) from None
    child = parse_one(spec.index, expanded, path=(*spec.path, 0), stack=(*stack, name))
    return replace(spec, children=(child,))
