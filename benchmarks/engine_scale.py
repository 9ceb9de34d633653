"""The engine at scale: file size, wall time and peak memory of ``inspect`` and ``prune --keep 0.5``.

Each command runs in its own process (``/usr/bin/time`` reports wall seconds and peak RSS). Models:
torchvision ResNet-18/50/152, VGG-16 and ViT-B/16 at 224x224 with random weights (the corpus exporter,
BatchNormalization fused), and a generated MLP of at least 3 GB stored with external data (``mlp``).
Baselines, measured in the same run: the code at each ``--base`` commit on ``--help`` and ResNet-50,
run from a ``git archive`` of that commit. ``--stages`` adds a per-stage breakdown (seconds and peak RSS
of load, analysis, pruning, the oracle, writing) of ``prune`` in one process.

Timing protocol: run it under ``/work/timed.sh`` (alone on one core; every other process is fenced onto
the other core), one thread everywhere. Split long runs by ``--models`` and join them with ``--merge``:

    /work/timed.sh .venv/bin/python benchmarks/engine_scale.py --models resnet18 resnet50 --stages resnet50
    /work/timed.sh .venv/bin/python benchmarks/engine_scale.py --merge --no-help --models mlp --stages mlp

Generated files go to ``--work`` (default ``.cache/engine_scale``); the big model is deleted afterwards
unless ``--keep-big`` (one found there is reused; generating it is I/O-bound and takes minutes).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from agmc_onnx.models.corpus import CORPUS, CorpusEntry, export_corpus_model

ROOT = Path(__file__).resolve().parent.parent
MODELS = {"resnet18": "resnet18", "resnet50": "resnet50", "resnet152": "resnet152", "vgg16": "vgg16"}
MODELS["vit_b_16"] = "vit_b_16"
BIG = "mlp"  # the generated external-data model
# 66d932f: before the cheaper ulp perturbation, malloc threshold, mapped load and networkx-free analysis;
# cdb1352: main before the oracle fed weights to skeleton sessions; aee8d5d: before the engine work began.
BASE_COMMITS = ("66d932f", "cdb1352", "aee8d5d")
ONE_THREAD = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _timed(command: list[str], env: dict | None = None, cwd: Path = Path(tempfile.gettempdir())) -> dict:
    """Wall seconds and peak RSS (MB) of one process, with the 1-minute load average before it.

    The process runs outside the repository: ``python -c`` puts its working folder first on the import
    path, which would shadow the baseline's ``PYTHONPATH``.
    """
    load = _load()
    with tempfile.NamedTemporaryFile("r", suffix=".time") as report:
        result = subprocess.run(
            ["/usr/bin/time", "-o", report.name, "-f", "%e %M", *command],
            capture_output=True,
            text=True,
            env={**(env or os.environ), **ONE_THREAD},
            cwd=cwd,
        )
        wall, peak_kb = report.read().split()[-2:]
    return {
        "ok": result.returncode == 0,
        "wall_s": float(wall),
        "peak_mb": int(peak_kb) / 1024,
        "load": load,
        "error": result.stderr.strip().splitlines()[-1] if result.returncode and result.stderr.strip() else "",
    }


def _cli(python: str) -> list[str]:
    return [python, "-c", "from agmc_onnx.cli.main import main; main()"]


def _base_checkout(work: Path, commit: str) -> dict:
    """The environment that imports ``agmc_onnx`` from ``commit`` (cli/, passes/, models/ inside it)."""
    tree = work / f"base-{commit}"
    if not tree.exists():
        tree.mkdir(parents=True)
        archive = subprocess.run(["git", "archive", commit], cwd=ROOT, check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    package = work / f"base-{commit}-pkg"
    if not package.exists():
        (package / "agmc_onnx").mkdir(parents=True)
        for entry in (tree / "agmc_onnx").iterdir():
            (package / "agmc_onnx" / entry.name).symlink_to(entry)
        for folder in ("cli", "passes", "models"):
            (package / "agmc_onnx" / folder).symlink_to(tree / folder)
    return dict(os.environ, PYTHONPATH=str(package))


def _median_help(python: str, env: dict | None, repeats: int = 5) -> dict:
    runs = [_timed([*_cli(python), "--help"], env=env) for _ in range(repeats)]
    return {
        "ok": all(r["ok"] for r in runs),
        "wall_s": statistics.median(r["wall_s"] for r in runs),
        "peak_mb": statistics.median(r["peak_mb"] for r in runs),
        "load": runs[0]["load"],
        "error": "",
    }


def generate_mlp(path: Path, target_gb: float, width: int = 8192) -> Path:
    """An MLP of Gemm+Relu layers, ``width`` wide, with at least ``target_gb`` GB of weights in ``PATH.data``.

    Weights are written layer by layer straight into the data file, so generating needs one layer of memory.
    """
    layer_bytes = width * width * 4
    n_layers = max(2, int(np.ceil(target_gb * 1e9 / layer_bytes)))
    rng = np.random.default_rng(0)
    data_name = f"{path.name}.data"
    nodes, initializers, offset, x = [], [], 0, "input"
    with open(path.parent / data_name, "wb") as data:
        for index in range(n_layers):
            weight = rng.standard_normal((width, width), dtype=np.float32) / np.float32(np.sqrt(width))
            data.write(weight.tobytes())
            tensor = TensorProto(name=f"w{index}", data_type=TensorProto.FLOAT, dims=[width, width])
            tensor.data_location = TensorProto.EXTERNAL
            for key, value in (("location", data_name), ("offset", str(offset)), ("length", str(layer_bytes))):
                tensor.external_data.add(key=key, value=value)
            offset += layer_bytes
            bias = onnx.numpy_helper.from_array(rng.standard_normal(width).astype(np.float32) * 0.1, f"b{index}")
            initializers += [tensor, bias]
            y = f"h{index}"
            nodes.append(helper.make_node("Gemm", [x, f"w{index}", f"b{index}"], [y], name=f"fc{index}", transB=1))
            if index < n_layers - 1:
                nodes.append(helper.make_node("Relu", [y], [f"r{index}"], name=f"relu{index}"))
                x = f"r{index}"
    graph = helper.make_graph(
        nodes,
        "big_mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info(y, TensorProto.FLOAT, ["batch", width])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path.write_bytes(model.SerializeToString())
    return path


def _stored_mb(path: Path) -> float:
    data = path.with_name(f"{path.name}.data")
    return (path.stat().st_size + (data.stat().st_size if data.exists() else 0)) / 2**20


def _read_once(path: Path) -> None:
    """Read the model's files once, so that no timed process waits for the disk (a warm page cache)."""
    for file in (path, path.with_name(f"{path.name}.data")):
        if file.exists():
            with open(file, "rb") as handle:
                while handle.read(1 << 24):
                    pass


def measure_model(python: str, name: str, path: Path, work: Path, env: dict | None = None) -> dict:
    """``inspect`` and ``prune --keep 0.5`` (the oracle included) on one model, each its own process."""
    out = work / f"{name}-pruned.onnx"
    _read_once(path)
    inspect = _timed([*_cli(python), "inspect", str(path)], env=env)
    prune = _timed([*_cli(python), "prune", str(path), "--keep", "0.5", "-o", str(out)], env=env)
    row = {"model": name, "file_mb": _stored_mb(path), "inspect": inspect, "prune": prune}
    if out.exists():
        row["pruned_mb"] = _stored_mb(out)
        out.unlink()
        out.with_name(f"{out.name}.data").unlink(missing_ok=True)
    return row


def stage_probe(path: Path) -> None:
    """``prune --keep 0.5`` of ``path`` stage by stage in this process: JSON lines of seconds and peak RSS.

    The peak (VmHWM) is reset before each stage, so each line is that stage's own peak.
    """
    def status(key: str) -> float:
        line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(key))
        return int(line.split()[1]) / 1024

    clock = time.perf_counter()

    def stage(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        print(json.dumps({"stage": name, "s": now - clock, "peak_mb": status("VmHWM"), "rss_mb": status("VmRSS")}))
        Path("/proc/self/clear_refs").write_text("5")
        clock = time.perf_counter()

    stage("start")
    from agmc_onnx.analysis import analyze_model
    from agmc_onnx.cli.main import return_freed_blocks
    from agmc_onnx.io import load_model, save_model
    from agmc_onnx.loaded_model import detach_loaded_model, without_file_weights
    from agmc_onnx.plan import PruningPlan, uniform_plan
    from agmc_onnx.prune import prune_model
    from agmc_onnx.validate import validate_pruned

    return_freed_blocks()  # as the CLI does
    onnxruntime_runs = _count_onnxruntime_runs()
    stage("import")
    model = load_model(path)
    stage("load")
    analysis = analyze_model(model)
    stage("analysis")
    loaded = detach_loaded_model(model, analysis, path)  # as the CLI does: the loaded model is let go
    del model
    gc.collect()
    stage("detach")
    plan = uniform_plan(analysis.groups, 0.5, 1)
    result = prune_model(analysis.model, PruningPlan(plan.keep_ratios, plan.round_to, "l1"), analysis=analysis)
    stage("pruning")
    analysis = without_file_weights(loaded, analysis)  # as the CLI does
    gc.collect()
    validate_pruned(loaded, analysis, result.selection, result.model)
    runs = dict(onnxruntime_runs)  # read before the stage line: it restarts the clock
    stage("oracle")
    print(json.dumps({"stage": f"oracle: of which {runs['count']} onnxruntime runs", "s": runs["s"]}))
    with tempfile.TemporaryDirectory(dir=path.parent) as folder:
        save_model(result.model, Path(folder) / "pruned.onnx")
        stage("write")


def _count_onnxruntime_runs() -> dict:
    """Seconds and number of the oracle's onnxruntime runs (session build and run), counted from now on:
    the floor of the oracle as designed (batch 2: the masked reference, its ulp-perturbed copy, the pruned
    model)."""
    import agmc_onnx.validate as validate

    counted = {"count": 0, "s": 0.0}
    run = validate.run_fed

    def timed_run(*args, **kwargs):
        start = time.perf_counter()
        try:
            return run(*args, **kwargs)
        finally:
            counted["count"] += 1
            counted["s"] += time.perf_counter() - start

    validate.run_fed = timed_run
    return counted


def _stages(python: str, path: Path) -> list[dict]:
    run = subprocess.run(
        [python, str(Path(__file__).resolve()), "--probe", str(path)],
        capture_output=True,
        text=True,
        env={**os.environ, **ONE_THREAD},
        cwd=tempfile.gettempdir(),
    )
    if run.returncode:
        return [{"stage": "failed", "error": run.stderr.strip().splitlines()[-1:]}]
    return [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]


def _export(name: str, builder: str, cache: Path) -> Path:
    entry = CorpusEntry(f"{name}_224", f"torchvision.models:{builder}", 224, heavy=True)
    CORPUS[entry.name] = entry
    return export_corpus_model(entry.name, fused_bn=True, cache_dir=cache)


def _cell(run: dict, file_mb: float) -> str:
    if not run["ok"]:
        return f"failed: {run['error'][:60]} | — | —"
    return f"{run['wall_s']:.2f} | {run['peak_mb']:.0f} | {run['peak_mb'] / file_mb:.1f}×"


def _per_100mb(row: dict, command: str) -> str:
    run = row[command]
    return f"{100 * run['wall_s'] / row['file_mb']:.2f}" if run["ok"] else "—"


def _fit(rows: list[dict], command: str) -> str:
    """Least-squares ``seconds = a + b × MB`` over the current code's rows, and its largest relative miss."""
    points = [(r["file_mb"], r[command]["wall_s"]) for r in rows if r["code"] == "now" and r[command]["ok"]]
    if len(points) < 3:
        return ""
    size, wall = np.array(points).T
    slope, start = np.polyfit(size, wall, 1)
    miss = np.max(np.abs(start + slope * size - wall) / wall)
    return (
        f"`{command}`: {start:.2f} s + {100 * slope:.2f} s per 100 MB over {len(points)} models from "
        f"{size.min():.0f} to {size.max():.0f} MB (largest miss of the line {miss:.0%})"
    )


PROTOCOL = (
    "Protocol: every invocation of this script ran under `/work/timed.sh`, which runs it alone on one core "
    "(CPU 1) while a fence keeps every other process of the shared 2-core machine on CPU 0; BLAS/OpenMP "
    "and onnxruntime use one thread. Each cell is one process, `agmc-onnx inspect MODEL` or "
    "`agmc-onnx prune MODEL --keep 0.5 -o OUT` (the equivalence oracle included), measured by "
    "`/usr/bin/time` (wall s, peak RSS MB — which counts the ~75 MB interpreter and libraries — and "
    "peak / file size). Each model's files are read once before its processes (warm page cache). Models "
    "have random weights; `mlp` is generated with external data."
)


def _goals(results: dict) -> list[str]:
    rows = [r for r in results["rows"] if r["code"] == "now"]
    lines = ["", "Goals (current code):"]
    if "now" in results.get("help", {}):
        lines.append(f"- `--help` ≤ 0.5 s: {results['help']['now']['wall_s']:.2f} s")
    for row in rows:
        ratios = [row[c]["peak_mb"] / row["file_mb"] for c in ("inspect", "prune") if row[c]["ok"]]
        failed = [c for c in ("inspect", "prune") if not row[c]["ok"]]
        verdict = "met" if not failed and max(ratios) <= 4 else "NOT met"
        worst = f"{max(ratios):.1f}×" if ratios else "—"
        note = f"; failed: {', '.join(failed)}" if failed else ""
        imports = [s for s in results.get("stages", {}).get(row["model"], []) if s["stage"] == "import"]
        if verdict != "met" and imports:  # the fixed floor: what the process holds before reading the model
            floor = imports[0]["peak_mb"]
            note += f"; the interpreter and libraries alone: {floor:.0f} MB = {floor / row['file_mb']:.1f}× the file"
        lines.append(f"- {row['model']}: peak ≤ 4× the file: {verdict} (worst {worst}{note})")
        if row["model"] == "resnet50" and row["prune"]["ok"]:
            lines.append(f"- `prune` ResNet-50@224 ≤ 3 s: {row['prune']['wall_s']:.2f} s")
    return lines


def _invocation(run: dict) -> str:
    if run["argv"] is None:
        return "earlier invocations, not recorded (the rows of the models none of the following measured)"
    return f"{run['utc']} UTC `engine_scale.py {' '.join(run['argv'])}`"


def _mb(stage: dict, key: str) -> str:
    return f"{stage[key]:.0f}" if key in stage else "—"


def render(results: dict) -> str:
    lines = [
        "# The engine at scale: start-up, wall time and peak memory",
        "",
        f"Machine: {results['machine']}. {PROTOCOL} Load averages (1/5/15 min) before each process are in "
        "`engine_scale.json`; the 1-minute load counts the fenced work on the other core.",
        "Baselines: the same commands on earlier commits, measured in the same invocation as the current code: "
        + ", ".join(f"`{b}`" for b in results["bases"])
        + " (`66d932f`: before the cheaper ulp perturbation, the 4 MiB malloc threshold, the mapped model file "
        "and the networkx-free analysis; `cdb1352`: before the oracle fed its weights to weightless sessions; "
        "`aee8d5d`: before the engine work began).",
        "",
        "Invocations whose rows this file holds (later ones replace the rows of the models they measured): "
        + "; ".join(_invocation(run) for run in results.get("runs", []))
        + ".",
        "",
        "| command | code | s (median of 5) | peak MB |",
        "|---|---|---|---|",
    ]
    for code, run in results.get("help", {}).items():
        lines.append(f"| `agmc-onnx --help` | {code} | {run['wall_s']:.2f} | {run['peak_mb']:.0f} |")
    lines += [
        "",
        "| model | code | file MB | inspect s | inspect peak MB | peak/file | prune s | prune peak MB | peak/file "
        "| pruned MB | inspect s/100 MB | prune s/100 MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in results["rows"]:
        lines.append(
            f"| {row['model']} | {row['code']} | {row['file_mb']:.0f} | {_cell(row['inspect'], row['file_mb'])} | "
            f"{_cell(row['prune'], row['file_mb'])} | {row.get('pruned_mb', 0):.0f} | "
            f"{_per_100mb(row, 'inspect')} | {_per_100mb(row, 'prune')} |"
        )
    fits = [f for f in (_fit(results["rows"], "inspect"), _fit(results["rows"], "prune")) if f]
    if fits:
        lines += ["", "Linear fit, seconds against file size: " + "; ".join(fits) + "."]
    for model, stages in results.get("stages", {}).items():
        lines += [
            "",
            f"Stages of `prune --keep 0.5` on {model} in one process (each stage's own peak RSS, VmHWM reset "
            "between stages):",
            "",
            "| stage | s | peak MB | RSS after MB |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {s['stage']} | {s.get('s', 0):.2f} | {_mb(s, 'peak_mb')} | {_mb(s, 'rss_mb')} |"
            if "error" not in s
            else f"| failed | {s['error']} | | |"
            for s in stages
            if s["stage"] != "start"
        ]
    return "\n".join(lines + _goals(results)) + "\n"


def _measure_big(python: str, args: argparse.Namespace, record) -> None:
    free_gb = shutil.disk_usage(args.work).free / 1e9
    if free_gb < 3 * args.big_gb:
        raise SystemExit(f"only {free_gb:.0f} GB free in {args.work}; the big model needs {3 * args.big_gb:.0f}")
    big = args.work / "mlp_big.onnx"
    if not (big.exists() and big.with_name(f"{big.name}.data").exists()):  # a leftover of an earlier run is reused
        generate_mlp(big, args.big_gb)
    try:
        record({**measure_model(python, BIG, big, args.work), "code": "now"})
        if BIG in args.stages:
            args.results.setdefault("stages", {})[BIG] = _stages(python, big)
            record(None)
    finally:
        if not args.keep_big:
            big.unlink(missing_ok=True)
            big.with_name(f"{big.name}.data").unlink(missing_ok=True)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=ROOT / ".cache" / "engine_scale")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--base", dest="bases", nargs="*", default=list(BASE_COMMITS))
    parser.add_argument("--big-gb", type=float, default=3.2)
    parser.add_argument("--models", nargs="*", default=[*MODELS, BIG], choices=[*MODELS, BIG])
    parser.add_argument("--stages", nargs="*", default=[], help="Models to break down stage by stage.")
    parser.add_argument("--no-help", action="store_true", help="Do not time --help (with --merge: keep it).")
    parser.add_argument("--cache", type=Path, default=ROOT / ".cache" / "corpus", help="Corpus export cache.")
    parser.add_argument("--merge", action="store_true", help="Keep the earlier results this run does not measure.")
    parser.add_argument("--keep-big", action="store_true", help="Keep the generated big model for another run.")
    parser.add_argument("--probe", type=Path, help=argparse.SUPPRESS)  # internal: one stage probe
    return parser.parse_args()


def main() -> None:
    args = _arguments()
    if args.probe:
        stage_probe(args.probe)
        return
    args.work.mkdir(parents=True, exist_ok=True)
    python = sys.executable
    envs = {base: _base_checkout(args.work, base) for base in args.bases}
    results = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB",
        "bases": args.bases,
        "rows": [],
    }
    if args.merge and (args.out / "engine_scale.json").exists():
        earlier = json.loads((args.out / "engine_scale.json").read_text())
        results["rows"] = [r for r in earlier["rows"] if r["model"] not in args.models]
        results["stages"] = {m: s for m, s in earlier.get("stages", {}).items() if m not in args.stages}
        results["help"] = earlier.get("help", {}) if args.no_help else {}
        results["bases"] = sorted(set(earlier.get("bases", [])) | set(args.bases), key=[*BASE_COMMITS].index)
        results["runs"] = earlier.get("runs", [{"utc": "earlier", "argv": None}])  # before runs were recorded
    results.setdefault("runs", []).append({"utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "argv": sys.argv[1:]})
    args.results = results

    def record(row: dict | None) -> None:  # results are rewritten after every row, so a cut-short run keeps its rows
        if row is not None:
            results["rows"].append(row)
            print(json.dumps(row), flush=True)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "engine_scale.json").write_text(json.dumps(results, indent=2))
        (args.out / "engine_scale.md").write_text(render(results))

    if not args.no_help:
        results["help"] = {"now": _median_help(python, None)}
        results["help"].update({base: _median_help(python, env) for base, env in envs.items()})
        record(None)
    for name, builder in MODELS.items():
        if name not in args.models:
            continue
        path = _export(name, builder, args.cache)
        record({**measure_model(python, name, path, args.work), "code": "now"})
        if name == "resnet50":
            for base, env in envs.items():
                record({**measure_model(python, name, path, args.work, env), "code": base})
        if name in args.stages:
            results.setdefault("stages", {})[name] = _stages(python, path)
            record(None)
    if BIG in args.models:
        _measure_big(python, args, record)
    print(render(results))


if __name__ == "__main__":
    main()
