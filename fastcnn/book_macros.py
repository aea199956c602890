"""The book's predefined macros (chapter 9), the data behind ``fastcnn.macros.MACROS``.

Written as in the book's notebooks, with one change for fastcnn's geometry: a
pooling layer whose window differs from its stride gets ``'padding': 'same'``
(the book's pooling pads SAME by default, fastcnn's pads nothing), so every
flower-sized model has the book's shapes. See docs/composite.md for where
fastcnn's SAME arithmetic still differs from the book's (window alignment,
avg counting the padding, Inception-v3's 299 -> 149 instead of 148).

``'#act'`` is the conv ``actions`` string passed down from the model's args
(``'LA'`` or ``'LAB'``); ``'#n'``, ``'#chn'``, ``'#cnt'``... are sizes.
"""

from __future__ import annotations


def _c(name: str, args: dict | None = None) -> list:
    return ["custom", {"name": name, "args": args or {}}]


def _cv(ksize, chn, stride=None) -> list:
    settings = {"ksize": ksize, "chn": chn, "actions": "#act"}
    if stride is not None:
        settings["stride"] = stride
    return ["conv", settings]


def _conv(ksize, chn, stride=None, padding=None) -> list:
    settings = {"ksize": ksize, "chn": chn}
    if stride is not None:
        settings["stride"] = stride
    if padding is not None:
        settings["padding"] = padding
    return ["conv", settings]


def _avg(ksize, stride) -> list:
    return ["avg", {"ksize": ksize, "stride": stride, "padding": "same"}]


_ACT = {"#act": "#act"}

_INCEPTION_V3 = {
    "v3_preproc": ["serial", _conv(3, 32, 2, "VALID"), _conv(3, 32, None, "VALID"),
                   _conv(3, 64, None, "SAME"), ["max", {"ksize": 3, "stride": 2, "padding": "VALID"}],
                   _conv(1, 80, None, "VALID"),
                   _conv(3, 192, None, "VALID"), ["max", {"ksize": 3, "stride": 2, "padding": "VALID"}]],
    "v3_inception1": ["parallel", _conv(1, 64),
                      ["serial", _conv(1, 48), _conv(5, 64)],
                      ["serial", _conv(1, 64), _conv(3, 96), _conv(3, 96)],
                      ["serial", _avg(3, 1), _conv(1, "#chn")]],
    "v3_resize1": ["parallel", _conv(3, 384, 2),
                   ["serial", _conv(1, 64), _conv(3, 96), _conv(3, 96, 2)],
                   ["max", {"ksize": 3, "stride": 2, "padding": "same"}]],
    "v3_inception2": ["parallel", _conv(1, 192),
                      ["serial", _conv([1, 1], "#chn"), _conv([1, 7], "#chn"), _conv([7, 1], 192)],
                      ["serial", _conv([1, 1], "#chn"), _conv([7, 1], "#chn"), _conv([1, 7], "#chn"),
                       _conv([7, 1], "#chn"), _conv([1, 7], 192)],
                      ["serial", _avg(3, 1), _conv(1, 192)]],
    "v3_resize2": ["parallel", ["serial", _conv(1, 192), _conv(3, 320, 2)],
                   ["serial", _conv([1, 1], 192), _conv([1, 7], 192), _conv([7, 1], 192),
                    _conv([3, 3], 192, [2, 2])],
                   ["max", {"ksize": 3, "stride": 2, "padding": "same"}]],
    "v3_inception3": ["parallel", _conv(1, 320),
                      ["serial", _conv([3, 3], 384), ["parallel", _conv([1, 3], 384), _conv([3, 1], 384)]],
                      ["serial", _conv([1, 1], 448), _conv([3, 3], 384),
                       ["parallel", _conv([1, 3], 384), _conv([3, 1], 384)]],
                      ["serial", _avg(3, 1), _conv(1, 192)]],
    "v3_postproc": ["serial", ["avg", {"stride": 8}], ["dropout", {"keep_prob": 0.7}]],
    "inception_v3": ["serial", _c("v3_preproc"), _c("v3_inception1", {"#chn": 32}),
                     _c("v3_inception1", {"#chn": 64}), _c("v3_inception1", {"#chn": 64}), _c("v3_resize1"),
                     _c("v3_inception2", {"#chn": 128}), _c("v3_inception2", {"#chn": 160}),
                     _c("v3_inception2", {"#chn": 160}), _c("v3_inception2", {"#chn": 192}), _c("v3_resize2"),
                     _c("v3_inception3"), _c("v3_inception3"), _c("v3_postproc")],
}

_INCEPTION_FLOWER = {
    "flower_preproc": ["serial", _cv(3, 6, 2)],
    "flower_inception1": ["parallel", _cv(1, 4), _cv(3, 6), ["serial", _cv(3, 6), _cv(3, 6)],
                          ["serial", _avg(3, 1), _cv(1, 4)]],
    "flower_resize": ["parallel", _cv(3, 12, 2), ["serial", _cv(3, 12), _cv(3, 12, 2)], _avg(3, 2)],
    "flower_inception2": ["parallel", _cv(1, 8),
                          ["serial", _cv([3, 3], 8), ["parallel", _cv([1, 3], 8), _cv([3, 1], 8)]],
                          ["serial", _cv([1, 1], 8), _cv([3, 3], 8),
                           ["parallel", _cv([1, 3], 8), _cv([3, 1], 8)]],
                          ["serial", _avg(3, 1), _cv(1, 8)]],
    "flower_postproc": ["serial", ["avg", {"stride": 6}], ["dropout", {"keep_prob": 0.7}]],
    "inception_flower": ["serial", _c("flower_preproc", _ACT), _c("flower_inception1", _ACT),
                         _c("flower_resize", _ACT), _c("flower_inception1", _ACT), _c("flower_resize", _ACT),
                         _c("flower_inception2", _ACT), _c("flower_resize", _ACT),
                         _c("flower_inception2", _ACT), _c("flower_postproc", _ACT)],
}

_RESNET = {
    "p24": ["serial", ["loop", {"repeat": "#repeat"}, ["conv", {"ksize": 3, "chn": "#chn"}]],
            ["max", {"stride": 2}]],
    "vgg_19": ["serial", _c("p24", {"#repeat": 2, "#chn": 64}), _c("p24", {"#repeat": 2, "#chn": 128}),
               _c("p24", {"#repeat": 4, "#chn": 256}), _c("p24", {"#repeat": 4, "#chn": 512}),
               _c("p24", {"#repeat": 4, "#chn": 512}), ["loop", {"repeat": 2}, ["full", {"width": 4096}]]],
    "pn": ["serial", _cv(3, "#n", 2), ["loop", {"repeat": "#cnt1"}, _cv(3, "#n")]],
    "plain_34": ["serial", _cv(7, 64, 2), ["max", {"stride": 2}], ["loop", {"repeat": 6}, _cv(3, 64)],
                 _c("pn", {"#cnt1": 7, "#n": 128, **_ACT}), _c("pn", {"#cnt1": 11, "#n": 256, **_ACT}),
                 _c("pn", {"#cnt1": 5, "#n": 512, **_ACT}), ["avg", {"stride": 7}]],
    "rf": ["add", {"x": True}, ["serial", _cv(3, "#n"), _cv(3, "#n")]],
    "rh": ["add", {"x": False}, ["serial", _cv(3, "#n", 2), _cv(3, "#n")], ["avg", {"stride": 2}]],
    "rfull": ["serial", ["loop", {"repeat": "#cnt"}, _c("rf", {"#n": "#n", **_ACT})]],
    "rhalf": ["serial", _c("rh", {"#n": "#n", **_ACT}),
              ["loop", {"repeat": "#cnt1"}, _c("rf", {"#n": "#n", **_ACT})]],
    "residual_34": ["serial", _cv(7, 64, 2), ["max", {"stride": 2}],
                    _c("rfull", {"#cnt": 3, "#n": 64, **_ACT}),
                    _c("rhalf", {"#cnt1": 3, "#n": 128, **_ACT}),
                    _c("rhalf", {"#cnt1": 5, "#n": 256, **_ACT}),
                    _c("rhalf", {"#cnt1": 2, "#n": 512, **_ACT}), ["avg", {"stride": 7}]],
    "bf": ["add", {"x": True}, ["serial", _cv(1, "#n1"), _cv(3, "#n1"), _cv(1, "#n4")]],
    "bh": ["add", {"x": False}, ["serial", _cv(1, "#n1", 2), _cv(3, "#n1"), _cv(1, "#n4")],
           ["avg", {"stride": 2}]],
    "bfull": ["serial", ["loop", {"repeat": "#cnt"}, _c("bf", {"#n1": "#n1", "#n4": "#n4", **_ACT})]],
    "bhalf": ["serial", _c("bh", {"#n1": "#n1", "#n4": "#n4", **_ACT}),
              ["loop", {"repeat": "#cnt1"}, _c("bf", {"#n1": "#n1", "#n4": "#n4", **_ACT})]],
    "bottleneck_152": ["serial", _cv(7, 64, 2), ["max", {"ksize": 3, "stride": 2, "padding": "same"}],
                       _c("bfull", {"#cnt": 3, "#n1": 64, "#n4": 256, **_ACT}),
                       _c("bhalf", {"#cnt1": 7, "#n1": 128, "#n4": 512, **_ACT}),
                       _c("bhalf", {"#cnt1": 35, "#n1": 256, "#n4": 1024, **_ACT}),
                       _c("bhalf", {"#cnt1": 2, "#n1": 512, "#n4": 2048, **_ACT}), ["avg", {"stride": 7}]],
    # the flower-sized family (every model is built with {'#act': 'LAB'} in the book)
    "plain_flower": ["serial", _cv(7, 16, 2), ["max", {"stride": 2}], ["loop", {"repeat": 4}, _cv(3, 16)],
                     _c("pn", {"#cnt1": 3, "#n": 32, **_ACT}), _c("pn", {"#cnt1": 3, "#n": 64, **_ACT}),
                     ["avg", {"stride": 4}]],
    "residual_flower": ["serial", _cv(7, 16, 2), ["max", {"stride": 2}],
                        _c("rfull", {"#cnt": 2, "#n": 16, **_ACT}),
                        _c("rhalf", {"#cnt1": 1, "#n": 32, **_ACT}),
                        _c("rhalf", {"#cnt1": 1, "#n": 64, **_ACT}), ["avg", {"stride": 4}]],
    "bottleneck_flower": ["serial", _cv(7, 16, 2), ["max", {"ksize": 3, "stride": 2, "padding": "same"}],
                          _c("bfull", {"#cnt": 1, "#n1": 16, "#n4": 64, **_ACT}),
                          _c("bhalf", {"#cnt1": 2, "#n1": 32, "#n4": 128, **_ACT}),
                          _c("bhalf", {"#cnt1": 1, "#n1": 64, "#n4": 256, **_ACT}), ["avg", {"stride": 4}]],
}

#: every macro the book defines, by name
BOOK_MACROS: dict[str, object] = {**_INCEPTION_V3, **_INCEPTION_FLOWER, **_RESNET}
