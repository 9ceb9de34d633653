"""The engine at scale: file size, wall time and peak memory of ``inspect`` and ``prune --keep 0.5``.

Each command runs in its own process (``/usr/bin/time`` reports wall seconds and peak RSS). Models:
torchvision ResNet-18/50/152, VGG-16 and ViT-B/16 at 224x224 with random weights (the corpus exporter,
BatchNormalization fused), and a generated MLP of at least 3 GB stored with external data. The baseline,
measured in the same run, is the code at ``--base`` (default: the commit before this work) on
``--help`` and ResNet-50; it runs from a ``git archive`` of that commit.

    flock /tmp/agmc-heavy.lock .venv/bin/python benchmarks/engine_scale.py [--big-gb 3.2] [--skip-big]

Generated files go to ``--work`` (default ``.cache/engine_scale``) and the big model is deleted afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from agmc_onnx.models.corpus import CORPUS, CorpusEntry, export_corpus_model

ROOT = Path(__file__).resolve().parent.parent
# In the order they run: the big external-data model follows ResNet-50.
MODELS = [("resnet18", "resnet18"), ("resnet50", "resnet50"), ("resnet152", "resnet152"), ("vgg16", "vgg16")]
MODELS.append(("vit_b_16", "vit_b_16"))
BASE_COMMIT = "aee8d5d"


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
            env=env,
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


def _base_checkout(work: Path, commit: str) -> tuple[Path, dict]:
    """The base commit laid out as an importable ``agmc_onnx`` package (cli/, passes/, models/ inside it)."""
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
    env = dict(os.environ, PYTHONPATH=str(package))
    return package, env


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
            weight = (rng.standard_normal((width, width), dtype=np.float32) / np.sqrt(width)).astype(np.float32)
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


def measure_model(
    python: str,
    name: str,
    path: Path,
    work: Path,
    env: dict | None = None,
    prune_flags: tuple[str, ...] = (),
    inspect: dict | None = None,
) -> dict:
    """Both commands on one model (``inspect`` given: only ``prune``, reusing that measurement)."""
    out = work / f"{name.split()[0]}-pruned.onnx"
    inspect = inspect or _timed([*_cli(python), "inspect", str(path)], env=env)
    prune = _timed([*_cli(python), "prune", str(path), "--keep", "0.5", *prune_flags, "-o", str(out)], env=env)
    row = {"model": name, "file_mb": _stored_mb(path), "inspect": inspect, "prune": prune}
    if out.exists():
        row["pruned_mb"] = _stored_mb(out)
        out.unlink()
        out.with_name(f"{out.name}.data").unlink(missing_ok=True)
    return row


def _export(name: str, builder: str, cache: Path) -> Path:
    entry = CorpusEntry(f"{name}_224", f"torchvision.models:{builder}", 224, heavy=True)
    CORPUS[entry.name] = entry
    return export_corpus_model(entry.name, fused_bn=True, cache_dir=cache)


def _cell(run: dict, file_mb: float) -> str:
    if not run["ok"]:
        return f"failed: {run['error'][:60]} | — | —"
    return f"{run['wall_s']:.2f} | {run['peak_mb']:.0f} | {run['peak_mb'] / file_mb:.1f}×"


def render(results: dict) -> str:
    lines = [
        "# The engine at scale: start-up, wall time and peak memory",
        "",
        f"Machine: {results['machine']}. Load averages (1/5/15 min) before each run are in "
        "`engine_scale.json`; the machine is shared, so wall times are indicative.",
        "Each cell is one process: `agmc-onnx inspect MODEL` or `agmc-onnx prune MODEL --keep 0.5 -o OUT` "
        "(the equivalence oracle included), measured by `/usr/bin/time` (wall s, peak RSS MB, peak / file size).",
        f"Baseline: the same commands on commit `{results['base']}` (before this work), in the same run.",
        "",
        "| command | baseline s | now s | now peak MB |",
        "|---|---|---|---|",
    ]
    base, now = results["help"]["base"], results["help"]["now"]
    lines.append(
        f"| `agmc-onnx --help` (median of 5) | {base['wall_s']:.2f} | {now['wall_s']:.2f} | {now['peak_mb']:.0f} |"
    )
    lines += [
        "",
        "| model | code | file MB | inspect s | inspect peak MB | peak/file | prune s | prune peak MB | peak/file "
        "| pruned MB | load before |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in results["rows"]:
        lines.append(
            f"| {row['model']} | {row['code']} | {row['file_mb']:.0f} | {_cell(row['inspect'], row['file_mb'])} | "
            f"{_cell(row['prune'], row['file_mb'])} | {row.get('pruned_mb', 0):.0f} | {row['prune']['load']} |"
        )
    lines += ["", "Seconds per 100 MB of model (prune, current code): " + ", ".join(
        f"{r['model']} {100 * r['prune']['wall_s'] / r['file_mb']:.2f}"
        for r in results["rows"]
        if r["code"] == "now" and r["prune"]["ok"]
    ) + "."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=ROOT / ".cache" / "engine_scale")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--base", default=BASE_COMMIT)
    parser.add_argument("--big-gb", type=float, default=3.2)
    parser.add_argument("--skip-big", action="store_true")
    parser.add_argument("--models", nargs="*", default=[name for name, _ in MODELS])
    parser.add_argument("--cache", type=Path, default=ROOT / ".cache" / "corpus", help="Corpus export cache.")
    parser.add_argument(
        "--merge", action="store_true", help="Keep the rows of the existing results that this run does not measure."
    )
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    python = sys.executable
    _, base_env = _base_checkout(args.work, args.base)
    results = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB",
        "base": args.base,
        "help": {"base": _median_help(python, base_env), "now": _median_help(python, None)},
        "rows": [],
    }
    cache = args.cache
    measured = {(n, c) for n in args.models for c in ("now", "baseline")}
    if args.merge and (args.out / "engine_scale.json").exists():
        earlier = json.loads((args.out / "engine_scale.json").read_text())["rows"]
        results["rows"] = [r for r in earlier if (r["model"].split()[0], r["code"]) not in measured]

    def record(row: dict) -> None:  # results are rewritten after every row, so a cut-short run keeps its rows
        results["rows"].append(row)
        print(json.dumps(row), flush=True)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "engine_scale.json").write_text(json.dumps(results, indent=2))
        (args.out / "engine_scale.md").write_text(render(results))

    for name, builder in MODELS:
        if name not in args.models:
            continue
        path = _export(name, builder, cache)
        if name == "resnet50":
            record({**measure_model(python, name, path, args.work, base_env), "code": "baseline"})
        record({**measure_model(python, name, path, args.work), "code": "now"})
        if name == "resnet50" and not args.skip_big:
            _measure_big(python, args, record)
    print(render(results))


def _measure_big(python: str, args: argparse.Namespace, record) -> None:
    free_gb = shutil.disk_usage(args.work).free / 1e9
    if free_gb < 3 * args.big_gb:
        raise SystemExit(f"only {free_gb:.0f} GB free in {args.work}; the big model needs {3 * args.big_gb:.0f}")
    big = generate_mlp(args.work / "mlp_big.onnx", args.big_gb)
    try:
        first = measure_model(python, "mlp (external data)", big, args.work)
        record({**first, "code": "now"})
        label, flags = "mlp (external data), prune --no-validate", ("--no-validate",)
        second = measure_model(python, label, big, args.work, prune_flags=flags, inspect=first["inspect"])
        record({**second, "code": "now"})
    finally:
        big.unlink(missing_ok=True)
        big.with_name(f"{big.name}.data").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
