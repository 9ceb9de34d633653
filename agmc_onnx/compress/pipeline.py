"""``compress``: search → prune → fine-tune → evaluate → paired latency → report, resumable stage by stage."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import onnx

from agmc_onnx.analysis import ModelAnalysis, analyze_model
from agmc_onnx.compress.config import CompressConfig
from agmc_onnx.compress.gate import evaluate_gate, group_channels
from agmc_onnx.compress.quantize_stage import quantize_stage
from agmc_onnx.compress.report import CompressionReport, ModelFigures
from agmc_onnx.compress.workdir import WorkDirectory, stage_identities
from agmc_onnx.cost import measure_paired
from agmc_onnx.data import DataSplits, PreprocessSpec, load_splits, sample_subset, spec_from_model
from agmc_onnx.errors import DataError
from agmc_onnx.evaluate import evaluate_accuracy
from agmc_onnx.finetune import FinetuneConfig, Normalization, finetune
from agmc_onnx.graph.counting import count_cost
from agmc_onnx.graph.versions import converted_from_opset
from agmc_onnx.io import load_model, save_model
from agmc_onnx.progress import ProgressFn, StageEvent, report
from agmc_onnx.prune import prune_model
from agmc_onnx.reconstruct.run import reconstruct_pruned
from agmc_onnx.search import search_model
from agmc_onnx.search.run import SearchResult
from agmc_onnx.validate import check_written_model, validate_pruned

__all__ = ["CompressRun", "run_compress"]


@dataclass(frozen=True, eq=False)
class CompressRun:
    """Everything a finished run produced; ``outputs.write_outputs`` turns it into files."""

    report: CompressionReport
    model: onnx.ModelProto
    search: SearchResult
    resumed: bool


class _Stages:
    """The run's shared inputs; each method is one stage and caches its result in the work directory."""

    def __init__(self, model_path: Path, config: CompressConfig, work: WorkDirectory, progress: ProgressFn | None):
        self.config, self.work, self._progress = config, work, progress
        self.model = load_model(model_path)
        self.analysis: ModelAnalysis = analyze_model(self.model)
        self.spec: PreprocessSpec = spec_from_model(self.model)
        self.splits: DataSplits | None = None

    def tell(self, stage: str, message: str) -> None:
        """Announce a stage: "data" | "baseline" | "search" | "prune" | "finetune" | "evaluate" | "latency"."""
        report(self._progress, StageEvent(stage, message))

    def load_data(self) -> None:
        config = self.config
        if config.data is None:
            raise DataError("compress needs data: give --data (or a [compress] data entry in a config file)")
        self.tell("data", f"loading {config.data}")
        self.splits = load_splits(
            config.data,
            self.spec,
            reward_size=config.reward_size,
            test_size=config.test_size,
            seed=config.seed,
        )

    def test_top1(self, model: onnx.ModelProto) -> float:
        return evaluate_accuracy(model, self.splits.test, self.spec, progress=self._progress).top1

    def baseline(self) -> dict:
        cached = self.work.stage("baseline")
        if cached is None:
            self.tell("baseline", f"original test accuracy on {self.splits.test.n_images} images")
            cost = count_cost(self.model)
            cached = {
                "macs": cost.macs,
                "params": cost.params,
                "file_bytes": cost.file_bytes,
                "test_top1": self.test_top1(self.model),
            }
            self.work.save_stage("baseline", cached)
        return cached

    def search(self) -> SearchResult:
        config = self.config
        resume = (self.work.search_dir / "checkpoint.pt").exists()
        self.tell(
            "search",
            f"{config.policy} policy, {config.episodes} episodes" + (" (resuming)" if resume else ""),
        )

        return search_model(
            self.analysis,
            self.splits.reward,
            config.search_config(),
            spec=self.spec,
            run_dir=self.work.search_dir,
            resume=resume,
            progress=self._progress,
        )

    def prune(self, search: SearchResult) -> tuple[onnx.ModelProto, float]:
        """The physically pruned model, oracle-checked, with BatchNormalization statistics re-estimated."""
        path = self.work.model_path("searched")
        cached = self.work.stage("searched")
        if cached is not None and path.exists():
            return load_model(path), cached["test_top1"]
        self.tell("prune", "pruning with the best policy and checking the oracle")
        result = prune_model(self.model, search.plan, analysis=self.analysis)
        validate_pruned(self.model, self.analysis, result.selection, result.model)
        if self.config.reconstruct:
            self.tell("reconstruct", "re-fitting the layers that lost input channels by least squares")
            pruned = reconstruct_pruned(
                self.analysis, result.selection, result.model, self.splits.finetune, self.spec
            ).model
        else:
            pruned = search.reward.recalibrated(result.model)
        check_written_model(self.model, pruned)
        top1 = self.test_top1(pruned)
        save_model(pruned, path)
        self.work.save_stage("searched", {"test_top1": top1})
        return pruned, top1

    def finetune(self, pruned: onnx.ModelProto) -> onnx.ModelProto:
        config = self.config
        if config.finetune_epochs == 0:
            return pruned
        data = self.splits.finetune
        if config.finetune_images is not None:
            data = sample_subset(data, config.finetune_images, seed=config.seed)
        self.tell(
            "finetune",
            f"{config.finetune_epochs} epoch(s) on {data.n_images} images"
            + (", distilling from the original" if config.distill else ""),
        )

        result = finetune(
            pruned,
            data.images,
            data.labels,
            Normalization(tuple(self.spec.mean), tuple(self.spec.std), self.spec.scale),
            FinetuneConfig(epochs=config.finetune_epochs, seed=config.seed),
            teacher=self.model if config.distill else None,
            checkpoint_path=self.work.finetune_checkpoint,
            resume=self.work.finetune_checkpoint.exists(),
            progress=self._progress,
        )
        check_written_model(self.model, result.model)
        return result.model


def _figures(model: onnx.ModelProto, top1: float | None, latency=None) -> ModelFigures:
    cost = count_cost(model)
    return ModelFigures(
        cost.macs,
        cost.params,
        cost.file_bytes,
        top1,
        latency.median_ms if latency else None,
        latency.p90_ms if latency else None,
    )


def run_compress(
    model_path: Path,
    config: CompressConfig,
    out_dir: Path,
    *,
    restart: bool = False,
    progress: ProgressFn | None = None,
) -> CompressRun:
    """Compress the model at ``model_path`` into ``out_dir`` (nothing is written there but ``.work``)."""
    started = time.perf_counter()
    settings = {**config.as_dict(), "warmup_episodes": config.search_config().ddpg.warmup_episodes}
    identities = stage_identities(Path(model_path).read_bytes(), settings)
    work = WorkDirectory(out_dir, identities, restart)
    stages = _Stages(Path(model_path), config, work, progress)
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    stages.load_data()
    baseline = stages.baseline()
    timings["data+baseline"], clock = time.perf_counter() - clock, time.perf_counter()
    search = stages.search()
    timings["search"], clock = time.perf_counter() - clock, time.perf_counter()
    searched, searched_top1 = stages.prune(search)
    final = stages.finetune(searched)
    timings["finetune"], clock = time.perf_counter() - clock, time.perf_counter()
    stages.tell("evaluate", "test accuracy of the compressed model")
    final_top1 = stages.test_top1(final)
    shipped, quantized = final, None
    if config.quantize == "int8":
        stages.tell("quantize", "INT8 on the fine-tuned model; format measured on the target")
        quantized = quantize_stage(final, stages.splits.finetune, stages.spec, config.target).quantized
        shipped = quantized.model
    stages.tell("latency", f"paired latency on {config.target}, original against the model that ships")
    paired = measure_paired(stages.model, shipped, config.target)
    timings["evaluate+latency"] = time.perf_counter() - clock
    timings["total"] = time.perf_counter() - started
    original = ModelFigures(
        baseline["macs"],
        baseline["params"],
        baseline["file_bytes"],
        baseline["test_top1"],
        paired.a.median_ms,
        paired.a.p90_ms,
    )
    report = _build_report(
        stages,
        search,
        original,
        _figures(searched, searched_top1),
        _figures(final, final_top1, paired.b if quantized is None else None),
        paired,
        timings,
        str(model_path),
    )
    if quantized is not None:
        report = _with_int8(report, _figures(shipped, stages.test_top1(shipped), paired.b), quantized.quant_format)
    return CompressRun(report, shipped, search, work.resumed)


def _with_int8(report: CompressionReport, int8: ModelFigures, quant_format: str) -> CompressionReport:
    """The INT8 model ships: it gets its row, and the gate judges it."""
    config = report.config
    kind, keep = report.budget_kind, report.budget_keep_fraction
    achieved = int8.macs / report.original.macs if kind == "flops" else 1.0 / report.speedup
    drop = 100.0 * (report.original.test_top1 - int8.test_top1)
    gate = evaluate_gate(kind, keep, achieved, drop, config.get("max_accuracy_drop"))
    return dataclasses.replace(
        report, quantized=int8, quantized_format=quant_format, achieved_keep_fraction=achieved,
        accuracy_drop_points=drop, gate=gate,
    )


def _build_report(
    stages: _Stages,
    search: SearchResult,
    original: ModelFigures,
    searched: ModelFigures,
    final: ModelFigures,
    paired,
    timings: dict,
    model_name: str,
) -> CompressionReport:
    config = stages.config
    kind, keep = config.budget
    achieved = final.macs / original.macs if kind == "flops" else 1.0 / paired.speedup
    drop = 100.0 * (original.test_top1 - final.test_top1)
    gate = evaluate_gate(kind, keep, achieved, drop, config.max_accuracy_drop)
    return CompressionReport(
        model=model_name,
        output="model.onnx",
        target=config.target,
        budget_kind=kind,
        budget_keep_fraction=keep,
        achieved_keep_fraction=achieved,
        policy=config.policy,
        episodes=len(search.records),
        best_episode=search.best_episode,
        best_reward_top1=search.best_reward,
        keep_ratios=dict(search.plan.keep_ratios),
        original=original,
        searched=searched,
        final=final,
        speedup=paired.speedup,
        speedup_low=paired.speedup_low,
        speedup_high=paired.speedup_high,
        accuracy_drop_points=drop,
        max_accuracy_drop_points=config.max_accuracy_drop,
        gate=gate,
        data={
            "reward_images": stages.splits.reward.n_images,
            "finetune_images": stages.splits.finetune.n_images
            if config.finetune_images is None
            else min(config.finetune_images, stages.splits.finetune.n_images),
            "test_images": stages.splits.test.n_images,
            "source": str(config.data),
        },
        timings_s=timings,
        groups=group_channels(stages.analysis, search.plan),
        config=dataclasses.asdict(config),
        converted_from_opset=converted_from_opset(stages.model),
    )
