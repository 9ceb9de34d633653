"""Our ONNX->torch executor against onnx2torch on the corpus: coverage, output match, trainables, speed.

    python benchmarks/executor_vs_onnx2torch.py [--include-heavy] [--batch 8] [--repeats 5] [--out PATH]

For every corpus model (both variants) and the shared CIFAR models: does it convert, does the eval-mode
output match onnxruntime (max |diff| / max |reference| <= 1e-4), how many float initializers become
trainable parameters, and the median time of one train-mode forward+backward. onnx2torch is optional:
without it only our executor is measured (``pip install onnx2torch``; it is not a project dependency).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from agmc_onnx.io import load_model
from agmc_onnx.models.corpus import corpus_names, export_corpus_model
from agmc_onnx.torch_exec import OnnxModule

REPO = Path(__file__).resolve().parents[1]
SHARED_MODELS = REPO.parent / "shared" / "models"
TOLERANCE = 1e-4

try:
    import onnx2torch
except ImportError:  # optional: the comparison column is left empty
    onnx2torch = None


@dataclass(frozen=True)
class ToolResult:
    converts: bool
    matches: bool | None
    rel_error: float
    n_trainable: int  # trainable tensors
    trainable_elements: int
    step_ms: float
    error: str = ""


@dataclass(frozen=True)
class ModelRow:
    name: str
    n_float_inits: int
    n_running_stats: int
    float_elements: int
    ours: ToolResult
    theirs: ToolResult | None


def _float_initializer_stats(model: onnx.ModelProto) -> tuple[int, int, int]:
    floats = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT]
    stats = {
        n.input[i] for n in model.graph.node if n.op_type == "BatchNormalization" for i in (3, 4) if len(n.input) > i
    }
    n_stats = sum(1 for t in floats if t.name in stats)
    elements = sum(int(np.prod(t.dims)) for t in floats if t.name not in stats)
    return len(floats), n_stats, elements


def _one_step_ms(module: torch.nn.Module, x: torch.Tensor) -> float:
    started = time.perf_counter()
    out = module(x)
    out = out[0] if isinstance(out, (tuple, list)) else out
    out.float().square().mean().backward()
    module.zero_grad(set_to_none=True)
    return (time.perf_counter() - started) * 1e3


def _paired_step_ms(modules: list[torch.nn.Module], x: torch.Tensor, repeats: int) -> list[float]:
    """Median train-mode step time of each module, runs interleaved (A-B-A-B) so that load drift hits both."""
    for module in modules:
        module.train()
        _one_step_ms(module, x)  # warm-up
    times: list[list[float]] = [[] for _ in modules]
    for _ in range(repeats):
        for i, module in enumerate(modules):
            times[i].append(_one_step_ms(module, x))
    return [statistics.median(t) for t in times]


def _check(build, x: np.ndarray, reference: np.ndarray) -> tuple[ToolResult, torch.nn.Module | None]:
    """Convert, compare with onnxruntime and count trainables; step time is filled in later."""
    try:
        module = build()
    except Exception as exc:  # noqa: BLE001 - a converter failure is a result here
        return ToolResult(False, None, float("nan"), 0, 0, float("nan"), _short(exc)), None
    try:
        module.eval()
        with torch.no_grad():
            out = module(torch.from_numpy(x))
        out = out[0] if isinstance(out, (tuple, list)) else out
        rel = float(np.abs(out.numpy() - reference).max() / max(np.abs(reference).max(), 1e-12))
        module.train()
        _one_step_ms(module, torch.from_numpy(x))  # can it train at all?
    except Exception as exc:  # noqa: BLE001
        return ToolResult(True, False, float("nan"), 0, 0, float("nan"), _short(exc)), None
    trainable = [p for p in module.parameters() if p.requires_grad]
    n_elements = sum(p.numel() for p in trainable)
    return ToolResult(True, rel <= TOLERANCE, rel, len(trainable), n_elements, float("nan")), module


def _short(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"[:120]


def _row(name: str, path: Path, batch: int, repeats: int) -> ModelRow:
    model = load_model(path, check=False)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    shape = (3, dims[2].dim_value, dims[3].dim_value)
    x = np.random.default_rng(0).standard_normal((2, *shape)).astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    reference = session.run(None, {session.get_inputs()[0].name: x})[0]
    results = [_check(lambda: OnnxModule(model), x, reference)]
    if onnx2torch is not None:
        results.append(_check(lambda: onnx2torch.convert(model), x, reference))
    timed = [i for i, (_, module) in enumerate(results) if module is not None]
    x_step = torch.randn(batch, *shape, generator=torch.Generator().manual_seed(0))
    step_ms = _paired_step_ms([results[i][1] for i in timed], x_step, repeats)
    final = [result for result, _ in results]
    for i, ms in zip(timed, step_ms):
        final[i] = dataclasses.replace(final[i], step_ms=ms)
    return ModelRow(name, *_float_initializer_stats(model), final[0], final[1] if len(final) > 1 else None)


def _onnx2torch_version() -> str:
    if onnx2torch is None:
        return "absent"
    try:
        return importlib.metadata.version("onnx2torch")
    except importlib.metadata.PackageNotFoundError:
        return "unknown version"


def _cell(result: ToolResult | None) -> str:
    if result is None:
        return "not installed | | |"
    if not result.converts:
        return f"fails: {result.error.replace('|', '/')} | | |"
    detail = result.error.replace("|", "/") or f"{result.rel_error:.1e}"
    match = "yes" if result.matches else f"**no** ({detail})"
    return f"{match} | {result.n_trainable} | {result.trainable_elements:,} | {result.step_ms:.0f}"


def _report(rows: list[ModelRow], batch: int, repeats: int, seconds: float) -> str:
    lines = [
        "# Our torch executor vs onnx2torch",
        "",
        f"Command: `python benchmarks/executor_vs_onnx2torch.py --batch {batch} --repeats {repeats}` on "
        f"{platform.processor() or platform.machine()} ({torch.get_num_threads()} torch threads), torch "
        f"{torch.__version__}, onnx2torch {_onnx2torch_version()}, "
        f"{seconds:.0f} s in all.",
        "",
        "Columns per tool: output matches onnxruntime (eval mode, batch 2, max |diff| / max |ref| <= 1e-4); "
        "trainable tensors; trainable elements; median ms of one train-mode forward+backward at batch "
        f"{batch} (after one warm-up run; the two tools' runs interleaved, so load drift hits both). "
        "*float inits* counts float initializers; *BN stats* how many of "
        "them are BatchNormalization running statistics (buffers by design in both tools); *learnable "
        "elements* the float elements outside running statistics.",
        "",
        "| model | float inits | BN stats | learnable elements | ours: match | tensors | elements | ms "
        "| onnx2torch: match | tensors | elements | ms |",
        "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |",
    ]
    for row in rows:
        lines.append(
            f"| {row.name} | {row.n_float_inits} | {row.n_running_stats} | {row.float_elements:,} | "
            f"{_cell(row.ours)} | {_cell(row.theirs)} |"
        )
    lines += ["", _summary(rows)]
    return "\n".join(lines) + "\n"


def _summary(rows: list[ModelRow]) -> str:
    def stats(pick) -> str:
        results = [pick(r) for r in rows if pick(r) is not None]
        if not results:
            return "not measured"
        converts = sum(r.converts for r in results)
        matches = sum(bool(r.matches) for r in results)
        full = sum(
            1
            for row in rows
            if pick(row) is not None and pick(row).converts and pick(row).trainable_elements >= row.float_elements
        )
        both = [
            row
            for row in rows
            if row.theirs and row.ours.converts and row.theirs.converts and row.ours.matches and row.theirs.matches
        ]
        ratio = statistics.median(pick(r).step_ms / r.ours.step_ms for r in both) if both else float("nan")
        return (
            f"converts {converts}/{len(results)}, matches onnxruntime {matches}/{len(results)}, "
            "every learnable "
            f"element trainable in {full}/{len(results)}, median step time relative to ours {ratio:.2f}×"
        )

    return (
        f"**Summary** over {len(rows)} models. Ours: {stats(lambda r: r.ours)}. "
        f"onnx2torch: {stats(lambda r: r.theirs)}."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--include-heavy", action="store_true")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "executor_vs_onnx2torch.md")
    args = parser.parse_args()
    started = time.perf_counter()
    cache = REPO / ".cache" / "corpus"
    models = [
        (f"{n}-{'fused' if f else 'bn'}", lambda n=n, f=f: export_corpus_model(n, f, cache_dir=cache))
        for n in corpus_names(include_heavy=args.include_heavy)
        for f in (False, True)
    ]
    models += [(f"shared {p.stem}", lambda p=p: p) for p in sorted(SHARED_MODELS.glob("cifar10_*.onnx"))]
    rows = []
    for name, path in models:
        rows.append(_row(name, path(), args.batch, args.repeats))
        print(f"{name}: ours {_cell(rows[-1].ours)} / onnx2torch {_cell(rows[-1].theirs)}", flush=True)
    report = _report(rows, args.batch, args.repeats, time.perf_counter() - started)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    print(report)


if __name__ == "__main__":
    main()
