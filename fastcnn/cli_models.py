"""``fastcnn structure`` and ``fastcnn convert``: the commands that take a model without data.

``structure`` prints the book's dump_structure of a preset or hconfig (``fastcnn.structure``);
``convert`` moves weights between fastcnn, Deep Learning from Scratch and PyTorch
(``fastcnn.interop``). Both name the architecture the same way (``--model``/``--preset`` or
``--hconfig``, with ``--input-shape`` and ``--classes``); the rest of the command line is
``fastcnn.cli``'s.
"""

from __future__ import annotations

import argparse

#: ``fastcnn structure`` / ``convert`` defaults: one input sample and the output width of each
#: preset's dataset
STRUCTURE_DEFAULTS = {"digits": ((8, 8, 1), 10), "simpleconvnet": ((28, 28, 1), 10),
                      "lenet": ((28, 28, 1), 10), "deepconvnet": ((28, 28, 1), 10),
                      "flower": ((96, 96, 3), 5), "office31": ((96, 96, 3), 34)}


def add_structure_parser(sub, process) -> None:
    """``fastcnn structure``: the book's dump_structure of a preset or hconfig, without data."""
    from . import cli  # here: fastcnn.cli imports this module
    structure = sub.add_parser("structure", parents=[process], help="print a model's layer tree with shapes "
                               "and parameter counts (the book's dump_structure), without data or weights")
    net = structure.add_mutually_exclusive_group(required=True)
    net.add_argument("--model", "--preset", dest="model", metavar="NAME", help="a preset from fastcnn.zoo")
    net.add_argument("--hconfig", help="hidden layers as a JSON list, or a path to a JSON file "
                     "(e.g. '[[\"custom\", {\"name\": \"vgg_19\"}]]')")
    structure.add_argument("--input-shape", type=input_shape, default=None,
                           help="one input sample as HxWxC (default: the preset's; 28x28x1 for --hconfig)")
    structure.add_argument("--classes", type=cli._positive_int, default=None,
                           help="output layer width (default: the preset's dataset's; 10 for --hconfig)")
    structure.set_defaults(dataset="structure")


def add_convert_parser(sub, process) -> None:
    """``fastcnn convert``: weights between fastcnn, Deep Learning from Scratch and PyTorch."""
    from . import cli  # here: fastcnn.cli imports this module
    convert = sub.add_parser("convert", parents=[process], help="convert weights (fastcnn.interop): a DLfS "
                             "pickle, torch state dict or fastcnn params -> .npz params or .pt state dict")
    net = convert.add_mutually_exclusive_group(required=True)
    net.add_argument("--preset", "--model", dest="model", metavar="NAME",
                     help="the architecture: a preset from fastcnn.zoo")
    net.add_argument("--hconfig", help="the architecture: hidden layers as a JSON list, or a JSON file")
    source = convert.add_mutually_exclusive_group(required=True)
    source.add_argument("--from-dlfs", metavar="PKL", help="a Deep Learning from Scratch save_params "
                        "pickle (read without running pickle code)")
    source.add_argument("--from-torch", metavar="PT", help="a state dict of the torch twin (torch.save)")
    source.add_argument("--from-params", metavar="NPZ", help="fastcnn params (.npz)")
    convert.add_argument("--out", required=True, help="output file: .npz (fastcnn) or .pt / .pth (torch)")
    convert.add_argument("--input-shape", type=input_shape, default=None,
                         help="one input sample as HxWxC (default: the preset's; 28x28x1 for --hconfig)")
    convert.add_argument("--classes", type=cli._positive_int, default=None,
                         help="output layer width (default: the preset's dataset's; 10 for --hconfig)")
    ratio = cli._number(float, lambda v: 0 <= v < 1, "a ratio in [0, 1)")
    convert.add_argument("--output-dropout", type=ratio,
                         default=0.0, help="--from-dlfs: ratio of a DLfS dropout after the last affine "
                         "that the architecture lacks (default 0)")
    convert.set_defaults(dataset="convert")


def input_shape(text: str) -> tuple[int, int, int]:
    try:
        values = tuple(int(p) for p in text.lower().replace(",", "x").split("x"))
    except ValueError:
        values = ()
    if len(values) != 3 or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"expected HxWxC, e.g. 28x28x1, got {text!r}")
    return values


def cmd_convert(args) -> int:
    from . import cli  # here: fastcnn.cli imports this module
    from .interop import convert

    name, hconfigs = cli._hconfigs(args)
    sources = {"dlfs": args.from_dlfs, "torch": args.from_torch, "params": args.from_params}
    source, path = next((kind, p) for kind, p in sources.items() if p is not None)
    shape, classes = model_shape(args)
    try:
        out = convert(hconfigs, source, path, args.out, input_shape=shape, classes=classes,
                      output_dropout=args.output_dropout, name=name)
    except (ValueError, TypeError, KeyError, OSError, ImportError) as exc:  # ImportError: no torch
        raise cli.UsageError(str(exc)) from None
    print(f"fastcnn convert: {path} ({source}) -> {out} (model {name!r})")
    return 0


def model_shape(args) -> tuple[tuple[int, int, int], int]:
    """``(input shape HWC, classes)`` of ``fastcnn structure`` / ``convert``: ``--input-shape`` and
    ``--classes`` when given, else the preset's own (``zoo.PRESET_INPUTS``, ``STRUCTURE_DEFAULTS``),
    else 28x28x1 and 10 (``--hconfig``)."""
    from .zoo import PRESET_INPUTS

    shape, classes = STRUCTURE_DEFAULTS.get(args.model, ((28, 28, 1), 10))
    if args.model in PRESET_INPUTS:
        shape, classes = PRESET_INPUTS[args.model], 5
    return args.input_shape or shape, args.classes or classes


def cmd_structure(args) -> int:
    from . import cli  # here: fastcnn.cli imports this module
    from .structure import dump_hconfigs

    name, hconfigs = cli._hconfigs(args)
    shape, classes = model_shape(args)
    try:
        dump_hconfigs(hconfigs, shape, classes)
    except (ValueError, TypeError, KeyError) as exc:
        raise cli.UsageError(str(exc)) from None
    return 0
