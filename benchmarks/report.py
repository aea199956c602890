"""Turn a pytest-benchmark JSON into a markdown ratio table and a bar chart.

Usage: ``python benchmarks/report.py RESULTS.json [--out docs/] [--stat min|median]``

Writes ``<out>/benchmark_table.md`` and ``<out>/benchmark_speedup.png`` and
prints the table. Times of the reduced-batch backends (``better``, ``adhoc``)
are scaled to the full batch with their ``extra_info['scale']``. Ratios are
``other backend time / numba time`` on the same workload in the same run
(> 1: numba is faster); forward+backward rows are in bold.

PyTorch rows are timed in both memory formats (``extra_info['torch_layout']``:
``nchw`` or ``channels_last``); per row the table shows the faster of the two,
names it in the column header (or in the cell, when the faster layout differs
between rows), and takes the ratio against it; a second table lists both.
The header names the CPU (model, AVX2, AVX-512) the JSON was recorded on.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib
from bench_common import TORCH_LAYOUTS

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

OTHERS = ("numba-aot", "numpy", "torch", "better", "adhoc")
PASS_ORDER = {"fwd": 0, "bwd": 1, "fwdbwd": 2, "fwdbwd+adam": 3}
#: the headline passes: bold in the table, bars in the chart
HEADLINE = ("fwdbwd", "fwdbwd+adam")


def load(path: Path, stat: str) -> tuple[dict, list, dict]:
    """-> ({(op, workload, pass): {backend: seconds at full batch}}, reference rows, machine info)."""
    doc = json.loads(path.read_text())
    times: dict = {}
    refs = []
    for bench in doc["benchmarks"]:
        info = bench.get("extra_info", {})
        seconds = bench["stats"][stat]
        if info.get("op") in ("conv", "pool", "step"):
            key = (info["op"], info["workload"], info["pass_"])
            row = times.setdefault(key, {})
            if info["backend"] == "torch":
                row.setdefault("_torch", {})[_layout(info)] = seconds * info.get("scale", 1.0)
            else:
                row[info["backend"]] = seconds * info.get("scale", 1.0)
            row.setdefault("_threads", info.get("numba_threads"))
            if info["backend"] == "numba":
                times[key]["_rate"] = _rate(info, seconds)
        else:
            refs.append((bench["name"], seconds, info))
    for row in times.values():  # torch at its faster layout
        if row.get("_torch"):
            row["_torch_layout"] = min(row["_torch"], key=row["_torch"].get)
            row["torch"] = row["_torch"][row["_torch_layout"]]
    return times, refs, doc.get("machine_info", {})


def _layout(info: dict) -> str:
    """The torch row's memory format; JSONs from before both were timed ran channels_last only."""
    layout = str(info.get("torch_layout") or "channels_last")
    return "channels_last" if "channels_last" in layout else layout


def torch_layout_label(times: dict, keys=None) -> str | None:
    """The faster torch layout if it is the same on every row (``keys``), else None."""
    keys = times if keys is None else keys
    layouts = {times[k]["_torch_layout"] for k in keys if "_torch_layout" in times[k]}
    return layouts.pop() if len(layouts) == 1 else None


def cpu_line(machine: dict) -> str:
    """The CPU of the run: the line recorded by the benchmarks' conftest, else pytest-benchmark's."""
    if machine.get("fastcnn_cpu"):
        return machine["fastcnn_cpu"]
    cpu = machine.get("cpu", {})
    flags = set(cpu.get("flags", []))
    yes = {True: "yes", False: "no"}
    vec = f"AVX2: {yes['avx2' in flags]}, AVX-512: {yes['avx512f' in flags]}" if flags else "AVX-512: ?"
    return f"{cpu.get('brand_raw', '?')}, {cpu.get('count', '?')} CPUs, {vec}"


def _rate(info: dict, seconds: float) -> str:
    """numba's throughput in the unit that bounds the op: GFLOP/s, GB/s or steps/s."""
    if "flops" in info:
        return f"{info['flops'] / seconds / 1e9:.0f} GFLOP/s"
    if "bytes" in info:
        return f"{info['bytes'] / seconds / 1e9:.1f} GB/s"
    if info.get("op") == "step":
        return f"{1.0 / seconds:.1f} steps/s"
    return "-"


def _ms(t):
    return "-" if t is None else f"{t * 1e3:.2f}"


def _ratio(t, base):
    return "-" if t is None else f"{t / base:.1f}x"


def table(times: dict) -> str:
    """Markdown: one row per (op, workload, pass); times in ms at full batch; ratios vs numba.

    The torch columns hold torch at its faster layout, named in the header when
    every row agrees, else in each cell.
    """
    keys = [k for k in sorted(times, key=lambda k: (k[0], k[1], PASS_ORDER[k[2]])) if "numba" in times[k]]
    same = torch_layout_label(times, keys)
    name = {o: o for o in OTHERS}
    name["torch"] = f"torch ({same or 'faster layout'})"
    head = "| op | workload | pass | numba ms | " + " | ".join(f"{name[o]} ms" for o in OTHERS)
    head += " | " + " | ".join(f"{name[o]}/numba" for o in OTHERS) + " | numba rate |"
    if not keys:
        return "(no row of this JSON has a numba time: nothing to compare against)"
    lines = [head, "|" + "---|" * (4 + 2 * len(OTHERS) + 1)]
    for key in keys:
        row = times[key]
        base = row["numba"]
        tag = {o: "" for o in OTHERS}
        if same is None and "_torch_layout" in row:
            tag["torch"] = f" ({row['_torch_layout']})"
        cells = [key[0], key[1], key[2], _ms(base)]
        cells += [_ms(row.get(o)) + (tag[o] if o in row else "") for o in OTHERS]
        cells += [_ratio(row.get(o), base) for o in OTHERS]
        cells += [row.get("_rate", "-")]
        if key[2] in HEADLINE:
            cells = [f"**{c}**" for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def torch_layouts(times: dict) -> str:
    """Markdown: both torch layouts per row, the faster one in bold and the slower's extra time."""
    keys = [k for k in sorted(times, key=lambda k: (k[0], k[1], PASS_ORDER[k[2]])) if times[k].get("_torch")]
    if not keys:
        return ""
    lines = ["| op | workload | pass | " + " | ".join(f"torch {lay} ms" for lay in TORCH_LAYOUTS)
             + " | faster | slower/faster |", "|" + "---|" * (3 + len(TORCH_LAYOUTS) + 2)]
    for key in keys:
        row = times[key]
        per, best = row["_torch"], row["_torch_layout"]
        cells = list(key)
        cells += [f"**{_ms(per[lay])}**" if lay == best else _ms(per.get(lay)) for lay in TORCH_LAYOUTS]
        others = [t for lay, t in per.items() if lay != best]
        cells += [best, f"{min(others) / per[best]:.2f}x" if others else "- (one layout timed)"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def references(refs: list, times: dict) -> str:
    """Reference points (machine sgemm, sgemm at conv shapes, copy, JIT cost), one line each."""
    lines = []
    nan = float("nan")
    for _name, seconds, info in refs:
        if info.get("op") == "sgemm":
            m, n, k = info["shape"]
            gflops = 2.0 * m * n * k / seconds / 1e9
            lines.append(f"- sgemm {info['shape']} float32: {seconds * 1e3:.1f} ms = {gflops:.0f} GFLOP/s")
        elif info.get("op") == "sgemm_shape":
            conv = times.get(("conv", info["workload"], info["pass_"]), {}).get("numba")
            ours = f"; numba conv {info['flops'] / conv / 1e9:.0f}" if conv else ""
            lines.append(f"- sgemm at the im2col shape of conv {info['workload']} {info['pass_']} "
                         f"(M, K, N = {', '.join(map(str, info['shape']))}): "
                         f"{info['flops'] / seconds / 1e9:.0f} GFLOP/s{ours}")
        elif info.get("op") == "batch_sum":
            bwd = times.get(("conv", info["workload"], "bwd"), {}).get("numba")
            share = f" = {100 * seconds / bwd:.2f} % of numba's conv backward" if bwd else ""
            lines.append(f"- ordered batch sum of g_k / g_b partials (determinism), conv {info['workload']}: "
                         f"{seconds * 1e3:.3f} ms{share}")
        elif info.get("op") == "copy":
            lines.append(f"- array copy {info['workload']}: {seconds * 1e3:.2f} ms = "
                         f"{info['bytes'] / seconds / 1e9:.1f} GB/s (read + write)")
        elif info.get("op") == "jit":
            lines.append(
                f"- numba first calls, {info['cache']} cache: {info.get('first_calls_s', nan):.2f} s "
                f"(whole process {info.get('process_s', nan):.2f} s, "
                f"import {info.get('import_s', nan):.2f} s)"
            )
    return "\n".join(lines)


def chart(times: dict, path: Path) -> None:
    """Bars of numpy/numba and torch/numba for forward+backward, log scale."""
    keys = sorted(k for k in times if k[2] in HEADLINE and "numba" in times[k])
    # one line per '-'-separated part of the workload id, so neighbouring labels never overlap
    labels = [op + "\n" + "\n".join(wid.split("-", 1)) for op, wid, _ in keys]
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(keys)), 4.5))
    width = 0.38
    torch_name = f"torch ({torch_layout_label(times, keys) or 'faster layout per bar'})"
    for i, other in enumerate(("numpy", "torch")):
        vals = [times[k][other] / times[k]["numba"] if other in times[k] else 0 for k in keys]
        xs = [j + (i - 0.5) * width for j in range(len(keys))]
        label = torch_name if other == "torch" else other
        ax.bar(xs, vals, width, label=f"{label} time / numba time")
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_yscale("log")
    ax.set_xticks(range(len(keys)), labels, fontsize=7)
    ax.set_ylabel("speedup of numba (x, log)")
    ax.set_title("forward+backward (and whole training steps): how many times faster numba is")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path, help="pytest-benchmark JSON (--benchmark-json)")
    ap.add_argument("--out", type=Path, default=Path("docs"), help="directory for the table and chart")
    ap.add_argument("--stat", default="min", choices=("min", "median", "mean"),
                    help="statistic per benchmark (default min: least sensitive to other load)")
    args = ap.parse_args(argv)
    times, refs, machine = load(args.results, args.stat)
    args.out.mkdir(parents=True, exist_ok=True)
    threads = {row.get("_threads") for row in times.values()} - {None}
    layouts = torch_layouts(times)
    if layouts:
        layouts = ("PyTorch in both memory formats (ms; the faster, in bold, is the one compared "
                   f"above):\n\n{layouts}\n\n")
    text = (
        f"CPU: {cpu_line(machine)}\n"
        f"Statistic: {args.stat}; numba threads: {', '.join(map(str, sorted(threads))) or '?'}\n\n"
        f"{table(times)}\n\n{layouts}{references(refs, times)}\n"
    )
    (args.out / "benchmark_table.md").write_text(text)
    chart(times, args.out / "benchmark_speedup.png")
    print(text)


if __name__ == "__main__":
    main()
