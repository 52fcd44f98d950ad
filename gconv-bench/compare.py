#!/usr/bin/env python3
"""Side-by-side speed of PyTorch's F.conv2d and `gconv bench` on the same layers.

A G-conv layer `from -> to` with `cin` / `cout` G-channels and a K x K kernel is an
ordinary convolution with an expanded filter bank: F.conv2d with `cin * nti` input
channels and `cout * nto` output channels (nti = 1 for z2, 4 for c4, 8 for d4; nto = 4
for c4, 8 for d4), stride 1, padding K // 2 ("same"), with a bias. For every shape this
script times, back to back on the same machine:

- PyTorch (CPU, torch.no_grad(), torch.set_num_threads(T), T = 1 unless the shape says 2)
  in three layouts, keeping the best median: NCHW contiguous, channels_last, and mkldnn
  (input `x.to_mkldnn()`, layer `torch.utils.mkldnn.to_mkldnn(conv)`; skipped with a
  note when unavailable). Layout conversions happen before timing. Each layout is warmed
  up for at least 100 ms, then timed over a fixed number of runs chosen from the warm-up
  so that the layout takes about 0.25 s; time.perf_counter() around every call, median.
- gconv: `gconv bench` with the same geometry and `--threads T`; its median_ms, gflops
  and path. `--iters` is chosen from a one-run probe so that the timed runs take about
  0.75 s.

The header also reports the FMA peak of one core, measured in the same run by `gconv
peak` (a register-resident multiply-add loop with the instructions of the micro-kernel
gconv uses), and "torch sgemm, 1 thread": the best GFLOP/s of a 1024^3 float32 matmul.
The table gives gconv's GFLOP/s as a percentage of the FMA peak times the threads.

Run from anywhere (system python is fine: when torch cannot be imported the script
re-runs itself with tools/.venv/bin/python, creating that venv with tools/setup-venv.sh
first if needed; that installs torch, a few GB):

    python3 gconv-bench/compare.py                   # all shapes, plain-text table
    python3 gconv-bench/compare.py --quick --shapes e,a   # smoke test, seconds
    python3 gconv-bench/compare.py --markdown        # Markdown table
    python3 gconv-bench/compare.py --update-readme   # rewrite the README block
    python3 gconv-bench/compare.py --gconv-path fast --repeat 3
    python3 gconv-bench/compare.py --also-paths fast,direct   # paths side by side

Shape groups (--shapes): a) C4->C4 10->10 k3 28x28, batch 1 and 32; b) Z2->C4 lifting
3->16 and 1->16, k3 and k5, 32x32 and 224x224; c) D4->D4 16->16 k3 32x32, batch 1 and 32;
d) C4->C4 64->64 k3 56x56 on 1 and on 2 threads; e) C4->C4 4->4 k3 16x16.

With `--dtype int8` every shape is timed in int8 instead: PyTorch's quantized convolution
(`torch.ao.nn.intrinsic.quantized.ConvReLU2d`, fused ReLU, on the fbgemm engine:
`torch.backends.quantized.engine = 'fbgemm'`; per-output-channel qint8 weights, a
per-tensor quint8 input and output, int32 bias) in two layouts, NCHW and channels_last,
keeping the best median, against `gconv bench --dtype int8` (the int8 fast path with the
best int8 kernel the CPU has, also with a fused ReLU; `GCONV_INT8_KERNEL` or
`GCONV_KERNEL=avx2_fma` in the environment choose another kernel). The same warm-up and
median method, threads and shapes as the f32 rows; GOP/s count an int8 multiply-add as
2 operations. The f32 behaviour is unchanged without `--dtype`; `--update-readme`
writes the f32 block only.

    python3 gconv-bench/compare.py --dtype int8      # int8 table, every shape

The ratio column is PyTorch ms / gconv ms: >= 1.0 means gconv is at least as fast.
gconv is built once with `cargo build --release -p gconv-std --features cli --bin gconv`
(CARGO_TARGET_DIR is respected). Exit status 0 on success, 1 with a one-line message when the build or a
`gconv bench` run fails.
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
BEGIN_MARKER = "<!-- compare:begin -->"
END_MARKER = "<!-- compare:end -->"
VENV_PYTHON = ROOT / "tools" / ".venv" / "bin" / "python"
SETUP_VENV = ROOT / "tools" / "setup-venv.sh"
REEXEC_ENV = "GCONV_COMPARE_REEXEC"

# Planes per G-channel: input side (nti) and output side (nto).
PLANES = {"z2": 1, "c4": 4, "d4": 8}

# Timing budgets in seconds: (torch warm-up per layout, torch timed runs per layout,
# gconv timed runs).
FULL_BUDGET = (0.1, 0.25, 0.75)
QUICK_BUDGET = (0.1, 0.03, 0.0)  # quick: gconv runs a fixed QUICK_GCONV_ITERS
QUICK_GCONV_ITERS = 5
MIN_RUNS = 5
MAX_RUNS = 5000


class Failure(Exception):
    """A step that cannot go on (build or gconv bench failed); one-line message."""


# ---------------------------------------------------------------------------------
# Shapes


def shape(group, label, src, dst, cin, cout, k, size, batch=1, threads=1):
    """One layer to time; `label` is the short text in the table's first column."""
    return {
        "group": group,
        "label": label,
        "from": src,
        "to": dst,
        "cin": cin,
        "cout": cout,
        "k": k,
        "size": size,
        "batch": batch,
        "threads": threads,
    }


def all_shapes():
    """The shape list, in table order, tagged with their group letter a..e."""
    shapes = []
    for batch in (1, 32):
        shapes.append(shape("a", "C4->C4 10->10 k3 28x28", "c4", "c4", 10, 10, 3, 28, batch))
    for cin in (3, 1):
        for k in (3, 5):
            for size in (32, 224):
                label = f"Z2->C4 {cin}->16 k{k} {size}x{size}"
                shapes.append(shape("b", label, "z2", "c4", cin, 16, k, size))
    for batch in (1, 32):
        shapes.append(shape("c", "D4->D4 16->16 k3 32x32", "d4", "d4", 16, 16, 3, 32, batch))
    for threads in (1, 2):
        shapes.append(
            shape("d", "C4->C4 64->64 k3 56x56", "c4", "c4", 64, 64, 3, 56, 1, threads)
        )
    shapes.append(shape("e", "C4->C4 4->4 k3 16x16", "c4", "c4", 4, 4, 3, 16))
    return shapes


def select_shapes(groups):
    """The shapes whose group letter is in the comma-separated `groups` ("a,c")."""
    wanted = [g.strip() for g in groups.split(",") if g.strip()]
    known = sorted({s["group"] for s in all_shapes()})
    unknown = [g for g in wanted if g not in known]
    if unknown:
        raise Failure(f"--shapes: unknown group(s) {','.join(unknown)}; known: {','.join(known)}")
    return [s for s in all_shapes() if s["group"] in wanted]


# ---------------------------------------------------------------------------------
# Environment: torch venv, machine description, gconv build


def ensure_torch():
    """Make `import torch` work: re-exec with tools/.venv's python (set up if needed)."""
    try:
        import torch  # noqa: F401

        return
    except ImportError:
        pass
    if os.environ.get(REEXEC_ENV):
        raise Failure(f"torch is not importable even with {VENV_PYTHON}")
    venv_has_torch = (
        VENV_PYTHON.exists()
        and subprocess.run(
            [str(VENV_PYTHON), "-c", "import torch"], capture_output=True
        ).returncode
        == 0
    )
    if not venv_has_torch:
        print(
            f"compare.py: torch not found; running {SETUP_VENV.relative_to(ROOT)} "
            "(installs torch into tools/.venv, a few GB)",
            file=sys.stderr,
        )
        if subprocess.run(["bash", str(SETUP_VENV)]).returncode != 0:
            raise Failure("tools/setup-venv.sh failed")
    os.environ[REEXEC_ENV] = "1"
    sys.stderr.flush()
    os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), str(Path(__file__).resolve()), *sys.argv[1:]])


def cpu_model():
    """The CPU's model name from /proc/cpuinfo (or platform's guess)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def git_revision():
    """Short commit of the workspace, with "+dirty" when the tree has changes."""
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return (rev or "unknown") + ("+dirty" if dirty else "")


def build_gconv():
    """`cargo build --release -p gconv-std --features cli --bin gconv`; returns the path of the
    built binary."""
    print("compare.py: cargo build --release -p gconv-std --features cli --bin gconv", file=sys.stderr)
    result = subprocess.run(
        [
            "cargo",
            "build",
            "--release",
            "-p",
            "gconv-std",
            "--features",
            "cli",
            "--bin",
            "gconv",
            "--message-format=json-render-diagnostics",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    if result.returncode != 0:
        raise Failure(
            "cargo build --release -p gconv-std --features cli --bin gconv failed "
            "(see the messages above)"
        )
    # Cargo's JSON messages name the executable, wherever the target directory is.
    for line in result.stdout.splitlines():
        try:
            message = json.loads(line)
        except json.JSONDecodeError:
            continue
        if (
            message.get("reason") == "compiler-artifact"
            and message.get("target", {}).get("name") == "gconv"
            and message.get("executable")
        ):
            return message["executable"]
    target_dir = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    binary = target_dir / "release" / "gconv"
    if not binary.exists():
        raise Failure(f"built gconv but cannot find the binary (tried {binary})")
    return str(binary)


# ---------------------------------------------------------------------------------
# Timing


def measure_peak(binary):
    """One core's FMA peak in GFLOP/s, from `gconv peak` (the kernel gconv uses)."""
    out = subprocess.run([binary, "peak"], capture_output=True, text=True)
    if out.returncode != 0:
        raise Failure(f"gconv peak failed: {out.stderr.strip()}")
    fields = dict(kv.split("=", 1) for kv in out.stdout.split())
    return float(fields["gflops"])


def measure_sgemm():
    """Best GFLOP/s of a 1024x1024x1024 float32 torch matmul on one thread."""
    import torch

    torch.set_num_threads(1)
    n = 1024
    a = torch.randn(n, n)
    b = torch.randn(n, n)
    c = torch.empty(n, n)
    with torch.no_grad():
        for _ in range(2):
            torch.mm(a, b, out=c)
        best = float("inf")
        for _ in range(7):
            start = time.perf_counter()
            torch.mm(a, b, out=c)
            best = min(best, time.perf_counter() - start)
    return 2.0 * n**3 / best / 1e9


def time_call(fn, warmup_s, budget_s, quick):
    """Median seconds of `fn()`: warm up >= warmup_s, then a fixed number of timed runs
    chosen from the warm-up so that they take about budget_s."""
    start = time.perf_counter()
    warmup_runs = 0
    while warmup_runs < 2 or time.perf_counter() - start < warmup_s:
        fn()
        warmup_runs += 1
    per_run = (time.perf_counter() - start) / warmup_runs
    min_runs = 3 if quick else MIN_RUNS
    runs = max(min_runs, min(MAX_RUNS, int(budget_s / per_run)))
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def torch_layouts(s):
    """{layout name: zero-argument forward} for shape `s`, conversions done up front,
    and a note (str or None) saying why mkldnn was skipped."""
    import torch
    import torch.nn.functional as F

    in_ch = s["cin"] * PLANES[s["from"]]
    out_ch = s["cout"] * PLANES[s["to"]]
    k, pad = s["k"], s["k"] // 2
    generator = torch.Generator().manual_seed(2016)
    x = torch.rand(s["batch"], in_ch, s["size"], s["size"], generator=generator) * 2 - 1
    w = torch.randn(out_ch, in_ch, k, k, generator=generator) * (2.0 / (in_ch * k * k)) ** 0.5
    b = torch.randn(out_ch, generator=generator) * 0.1

    x_cl = x.contiguous(memory_format=torch.channels_last)
    w_cl = w.contiguous(memory_format=torch.channels_last)
    layouts = {
        "nchw": lambda: F.conv2d(x, w, b, padding=pad),
        "channels_last": lambda: F.conv2d(x_cl, w_cl, b, padding=pad),
    }

    note = None
    if not torch.backends.mkldnn.is_available():
        note = "mkldnn skipped: torch.backends.mkldnn is not available"
    else:
        try:
            conv = torch.nn.Conv2d(in_ch, out_ch, k, padding=pad, bias=True).eval()
            with torch.no_grad():
                conv.weight.copy_(w)
                conv.bias.copy_(b)
            with warnings.catch_warnings():
                # torch.utils.mkldnn goes through deprecated torch.jit.script_method.
                warnings.simplefilter("ignore")
                import torch.utils.mkldnn

                conv_mkldnn = torch.utils.mkldnn.to_mkldnn(conv)
            x_mkldnn = x.to_mkldnn()
            with torch.no_grad():
                conv_mkldnn(x_mkldnn)  # fail here, not while timing
            layouts["mkldnn"] = lambda: conv_mkldnn(x_mkldnn)
        except Exception as e:  # any failure of the optional layout: skip it
            note = f"mkldnn skipped: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    return layouts, note


def torch_int8_layouts(s):
    """{layout name: zero-argument forward} of PyTorch's quantized convolution for shape
    `s` (fbgemm engine, per-channel qint8 weights, quint8 activations, fused ReLU), and
    a note (str or None). The expanded bank's planes of one G-channel share a weight
    scale, as in gconv."""
    import torch
    import torch.ao.nn.intrinsic.quantized as nniq

    if "fbgemm" not in torch.backends.quantized.supported_engines:
        raise Failure("torch has no fbgemm quantized engine on this machine")
    torch.backends.quantized.engine = "fbgemm"
    in_ch = s["cin"] * PLANES[s["from"]]
    nto = PLANES[s["to"]]
    out_ch = s["cout"] * nto
    k, pad = s["k"], s["k"] // 2
    generator = torch.Generator().manual_seed(2016)
    x = torch.rand(s["batch"], in_ch, s["size"], s["size"], generator=generator) * 2 - 1
    w = torch.randn(out_ch, in_ch, k, k, generator=generator) * (2.0 / (in_ch * k * k)) ** 0.5
    b = torch.randn(out_ch, generator=generator) * 0.1
    # One weight scale per G-channel (max |w| over its planes / 127), zero point 0.
    per_channel = w.abs().reshape(s["cout"], -1).amax(dim=1).clamp_min(1e-8) / 127.0
    w_scales = per_channel.repeat_interleave(nto).double()
    qw = torch.quantize_per_channel(
        w, w_scales, torch.zeros(out_ch, dtype=torch.long), axis=0, dtype=torch.qint8
    )
    conv = nniq.ConvReLU2d(in_ch, out_ch, k, padding=pad, bias=True)
    conv.set_weight_bias(qw, b)
    conv.scale = 1.0 / 16.0
    conv.zero_point = 133
    # Input scale 1/64, zero point 125 (gconv's -3 plus 128).
    xq = torch.quantize_per_tensor(x, 1.0 / 64.0, 125, torch.quint8)
    xq_cl = xq.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        conv(xq)  # fail here, not while timing
    layouts = {"nchw": lambda: conv(xq), "channels_last": lambda: conv(xq_cl)}
    return layouts, None


def time_torch(s, budget, quick, dtype="f32"):
    """Best median over the layouts: (ms, layout, {layout: ms}, mkldnn note)."""
    import torch

    warmup_s, per_layout_s, _ = budget
    torch.set_num_threads(s["threads"])
    layouts, note = torch_int8_layouts(s) if dtype == "int8" else torch_layouts(s)
    medians = {}
    with torch.no_grad():
        for name, fn in layouts.items():
            medians[name] = time_call(fn, warmup_s, per_layout_s, quick) * 1e3
    torch.set_num_threads(1)
    best = min(medians, key=medians.get)
    return medians[best], best, medians, note


def run_gconv_bench(binary, s, iters, gconv_path, dtype="f32"):
    """One `gconv bench` run; its result line as a {key: value} dict."""
    command = [
        binary,
        "bench",
        "--from", s["from"],
        "--to", s["to"],
        "--cin", str(s["cin"]),
        "--cout", str(s["cout"]),
        "-k", str(s["k"]),
        "--size", str(s["size"]),
        "--batch", str(s["batch"]),
        "--threads", str(s["threads"]),
        "--iters", str(iters),
        "--padding", "same",
    ]  # fmt: skip
    if gconv_path:
        command += ["--path", gconv_path]
    if dtype != "f32":
        command += ["--dtype", dtype]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        # The line that says what went wrong: clap's "error: ..." line, else the last one.
        stderr_lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
        errors = [line for line in stderr_lines if "error" in line.lower()]
        if errors:
            why = errors[0]
        elif stderr_lines:
            why = stderr_lines[-1]
        else:
            why = f"exit status {result.returncode}"
        raise Failure(f"gconv bench failed ({' '.join(command[1:])}): {why}")
    fields = parse_bench_line(result.stdout)
    for key in ("median_ms", "gflops", "path"):
        if key not in fields:
            raise Failure(f"gconv bench printed no {key}= (stdout: {result.stdout.strip()!r})")
    return fields


def parse_bench_line(stdout):
    """The last non-empty stdout line as whitespace-separated key=value pairs."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    if not lines:
        return {}
    fields = {}
    for item in lines[-1].split():
        key, sep, value = item.partition("=")
        if sep:
            fields[key] = value
    return fields


def time_gconv(binary, s, budget, quick, gconv_path, estimate_ms=None, dtype="f32"):
    """`gconv bench` with enough --iters for the budget: (fields, estimate_ms).
    Without an estimate, a one-run probe (after gconv's own warm-up) gives one."""
    _, _, gconv_s = budget
    if quick:
        iters = QUICK_GCONV_ITERS
    else:
        if estimate_ms is None:
            estimate_ms = float(run_gconv_bench(binary, s, 1, gconv_path, dtype)["median_ms"])
        iters = max(MIN_RUNS, min(MAX_RUNS, int(gconv_s * 1e3 / max(estimate_ms, 1e-6))))
    fields = run_gconv_bench(binary, s, iters, gconv_path, dtype)
    return fields, float(fields["median_ms"])


# ---------------------------------------------------------------------------------
# Running and reporting


def run_shape(binary, s, budget, quick, repeat, gconv_path, also_paths=(), dtype="f32"):
    """Torch then gconv, then gconv on each of `also_paths`, `repeat` times; the best
    median of each."""
    best_torch = None
    best_gconv = None
    others = {}
    notes = set()
    estimate_ms = None
    estimates = {}
    for _ in range(repeat):
        torch_ms, layout, medians, note = time_torch(s, budget, quick, dtype)
        if note:
            notes.add(note)
        if best_torch is None or torch_ms < best_torch["ms"]:
            best_torch = {"ms": torch_ms, "layout": layout, "medians": medians}
        fields, estimate_ms = time_gconv(
            binary, s, budget, quick, gconv_path, estimate_ms, dtype
        )
        if best_gconv is None or float(fields["median_ms"]) < best_gconv["ms"]:
            best_gconv = {
                "ms": float(fields["median_ms"]),
                "gflops": float(fields["gflops"]),
                "path": fields["path"],
                "threads": fields.get("threads", "?"),
                "fields": fields,
            }
        for path in also_paths:
            fields, estimates[path] = time_gconv(
                binary, s, budget, quick, path, estimates.get(path), dtype
            )
            ms = float(fields["median_ms"])
            if path not in others or ms < others[path]["ms"]:
                others[path] = {"ms": ms, "path": fields["path"]}
    return {
        "shape": s,
        "torch": best_torch,
        "gconv": best_gconv,
        "others": others,
        "ratio": best_torch["ms"] / best_gconv["ms"],
        "notes": notes,
    }


def row_cells(result, peak_gflops):
    """The table cells of one result, as strings."""
    s, t, g = result["shape"], result["torch"], result["gconv"]
    threads = str(s["threads"])
    if str(g["threads"]) != threads:
        threads += f" (gconv ran {g['threads']})"
    extra = []
    for path in ALSO_PATHS:
        other = result["others"][path]
        extra += [f"{other['ms']:.3f} ({other['path']})", f"{other['ms'] / g['ms']:.2f}"]
    cells = [
        s["label"],
        str(s["batch"]),
        threads,
        f"{t['ms']:.3f} ({t['layout']})",
        f"{g['ms']:.3f} ({g['path']})",
        f"{result['ratio']:.2f}",
        f"{g['gflops']:.1f}",
    ]
    if DTYPE[0] == "f32":
        cells.append(f"{100.0 * g['gflops'] / (peak_gflops * s['threads']):.0f}%")
    return cells + extra


def headers():
    """The column titles: the fixed ones, then two per `--also-paths` entry."""
    extra = []
    for path in ALSO_PATHS:
        extra += [f"gconv --path {path} ms", f"{path}/gconv"]
    return (INT8_HEADERS if DTYPE[0] == "int8" else HEADERS) + extra


# The data type of this run (set in main): "f32" or "int8".
DTYPE = ["f32"]

INT8_HEADERS = [
    "layer",
    "batch",
    "threads",
    "PyTorch int8 ms (fbgemm, best layout)",
    "gconv int8 ms (path)",
    "PyTorch/gconv",
    "gconv GOP/s",
]


# The `--also-paths` of this run (set in main).
ALSO_PATHS = []


HEADERS = [
    "layer",
    "batch",
    "threads",
    "PyTorch ms (best layout)",
    "gconv ms (path)",
    "PyTorch/gconv",
    "gconv GFLOP/s",
    "% of FMA peak x threads",
]


def machine_line(peak_gflops, results):
    """One line: CPU, cores, torch, gconv commit and paths, the peak and sgemm."""
    import torch

    paths = sorted({r["gconv"]["path"] for r in results})
    if DTYPE[0] == "int8":
        return (
            f"{cpu_model()}, {os.cpu_count()} logical CPUs; torch {torch.__version__} "
            f"(quantized engine {torch.backends.quantized.engine}); "
            f"gconv {git_revision()}, int8 path {'/'.join(paths)}"
        )
    return (
        f"{cpu_model()}, {os.cpu_count()} logical CPUs; torch {torch.__version__}; "
        f"gconv {git_revision()}, path {'/'.join(paths)}; "
        f"FMA peak of one core (gconv peak): {peak_gflops:.1f} GFLOP/s; "
        f"torch sgemm, 1 thread (1024^3 float32): {SGEMM[0]:.1f} GFLOP/s"
    )


# The torch sgemm reference of this run (set in main), for the machine line.
SGEMM = [0.0]


def summary_line(results):
    """Minimum ratio over the shapes and whether gconv kept up everywhere."""
    worst = min(results, key=lambda r: r["ratio"])
    s = worst["shape"]
    every = all(r["ratio"] >= 1.0 for r in results)
    return (
        f"min PyTorch/gconv = {worst['ratio']:.2f} ({s['label']}, batch {s['batch']}, "
        f"{s['threads']} thread{'s' if s['threads'] > 1 else ''}); "
        f"every ratio >= 1.0: {'yes' if every else 'no'}"
    )


def text_table(results, peak_gflops):
    """A plain-text table with aligned columns."""
    rows = [headers()] + [row_cells(r, peak_gflops) for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        cells = [
            cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i])
            for i, cell in enumerate(row)
        ]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(results, peak_gflops):
    """The same table in Markdown (numbers right-aligned)."""
    lines = [
        "| " + " | ".join(headers()) + " |",
        "|---|" + "---:|" * (len(headers()) - 1),
    ]
    for r in results:
        lines.append("| " + " | ".join(row_cells(r, peak_gflops)) + " |")
    return "\n".join(lines)


def notes_lines(results):
    """Distinct notes (skipped layouts) gathered while timing."""
    return sorted({note for r in results for note in r["notes"]})


def readme_block(results, peak_gflops):
    """The README section between the markers (markers excluded)."""
    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    parts = [
        "<!-- Generated by `python3 gconv-bench/compare.py --update-readme`; do not edit by hand. -->",
        "## Speed against PyTorch",
        "",
        "`python3 gconv-bench/compare.py` times PyTorch's `F.conv2d` on the expanded filter bank",
        "(the best of NCHW, channels_last and mkldnn layouts) and `gconv bench` on the same layers,",
        "interleaved in one run; `PyTorch/gconv` >= 1.0 means gconv is at least as fast. The last",
        "column is gconv's GFLOP/s over the FMA peak of one core (times the threads), measured in",
        "the same run by `gconv peak` (a register-resident multiply-add loop). GFLOP/s count",
        "the direct convolution's FLOPs on every path, so the group-Fourier path, which runs",
        "6/16 (C4) to 12/64 (D4) of them, shows an effective rate above the peak.",
        "With `--also-paths fast,direct` each shape also runs `gconv bench --path fast` and",
        "`--path direct`; `fast/gconv` is that path's time over gconv's default (`auto`: the",
        "group-Fourier path where its cost model says so, else the fast path).",
        "Options: `--quick`, `--shapes a,b,...`, `--repeat R`, `--gconv-path P`,",
        "`--also-paths P,Q`, `--markdown`, `--update-readme` (this block); torch comes from",
        "`tools/.venv` (`tools/setup-venv.sh`).",
        "",
        f"Last run {today}: {machine_line(peak_gflops, results)}.",
        "",
        markdown_table(results, peak_gflops),
        "",
        summary_line(results) + ".",
    ]
    for note in notes_lines(results):
        parts += ["", note + "."]
    return "\n".join(parts)


def update_readme(block):
    """Replace what is between the compare markers in README.md with `block`."""
    text = README.read_text()
    begin = text.find(BEGIN_MARKER)
    end = text.find(END_MARKER)
    if begin < 0 or end < begin:
        raise Failure(f"README.md has no {BEGIN_MARKER} ... {END_MARKER} block")
    start = begin + len(BEGIN_MARKER)
    README.write_text(text[:start] + "\n" + block + "\n" + text[end:])


# ---------------------------------------------------------------------------------


def parse_args():
    parser = argparse.ArgumentParser(
        description="PyTorch F.conv2d vs `gconv bench`, shape by shape (see the docstring)."
    )
    parser.add_argument("--quick", action="store_true", help="few timed runs (smoke test)")
    parser.add_argument(
        "--shapes", default="a,b,c,d,e", help="comma-separated shape groups (default a,b,c,d,e)"
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="time each shape R times, keep each side's best"
    )
    parser.add_argument(
        "--gconv-path", default=None, help="pass --path P to gconv bench (default: its own)"
    )
    parser.add_argument(
        "--also-paths",
        default="",
        help="comma-separated gconv paths (direct, fast, fourier) also timed per shape",
    )
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument(
        "--dtype",
        default="f32",
        choices=("f32", "int8"),
        help="f32 (F.conv2d, the default) or int8 (torch's quantized conv on fbgemm)",
    )
    parser.add_argument(
        "--update-readme", action="store_true", help="rewrite the README.md compare block"
    )
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    args.also_paths = [p for p in args.also_paths.split(",") if p]
    for p in args.also_paths:
        if p not in ("auto", "direct", "fast", "fourier"):
            parser.error(f"--also-paths: unknown path {p!r}: use direct, fast, fourier or auto")
        if args.dtype == "int8" and p == "fourier":
            parser.error("--also-paths: int8 has the paths auto, fast and direct")
    if args.dtype == "int8" and args.update_readme:
        parser.error("--update-readme writes the f32 block; run it without --dtype int8")
    return args


def main():
    args = parse_args()
    try:
        shapes = select_shapes(args.shapes)
        ALSO_PATHS[:] = args.also_paths
        DTYPE[0] = args.dtype
        ensure_torch()
        binary = build_gconv()
        budget = QUICK_BUDGET if args.quick else FULL_BUDGET

        peak_gflops = None
        if args.dtype == "f32":
            SGEMM[0] = measure_sgemm()
            peak_gflops = measure_peak(binary)
            print(
                f"compare.py: FMA peak {peak_gflops:.1f} GFLOP/s, "
                f"torch sgemm {SGEMM[0]:.1f} GFLOP/s",
                file=sys.stderr,
            )
        results = []
        for s in shapes:
            result = run_shape(
                binary,
                s,
                budget,
                args.quick,
                args.repeat,
                args.gconv_path,
                args.also_paths,
                args.dtype,
            )
            medians = ", ".join(f"{k} {v:.3f}" for k, v in result["torch"]["medians"].items())
            print(
                f"compare.py: {s['label']} b{s['batch']} t{s['threads']}: torch [{medians}] ms, "
                f"gconv {result['gconv']['ms']:.3f} ms ({result['gconv']['path']}), "
                f"ratio {result['ratio']:.2f}"
                + "".join(f", {p} {o['ms']:.3f} ms" for p, o in result["others"].items()),
                file=sys.stderr,
            )
            results.append(result)
    except Failure as e:
        print(f"compare.py: {e}", file=sys.stderr)
        return 1

    print(machine_line(peak_gflops, results))
    if args.quick:
        print("(--quick: few timed runs, numbers are rough)")
    print()
    if args.markdown:
        print(markdown_table(results, peak_gflops))
    else:
        print(text_table(results, peak_gflops))
    print()
    print(summary_line(results))
    for note in notes_lines(results):
        print(note)

    if args.update_readme:
        try:
            update_readme(readme_block(results, peak_gflops))
        except Failure as e:
            print(f"compare.py: {e}", file=sys.stderr)
            return 1
        print(f"compare.py: updated the compare block of {README}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
