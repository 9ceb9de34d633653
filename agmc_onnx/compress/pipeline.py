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
from agmc_onnx.compress.latency_stage import check_latency, settled_timing, with_plan
from agmc_onnx.compress.quantize_stage import quantize_stage
from agmc_onnx.compress.report import CompressionReport, ModelFigures
from agmc_onnx.compress.task import TaskData, prepare_task
from agmc_onnx.compress.workdir import WorkDirectory, stage_identities
from agmc_onnx.cost import measure_paired
from agmc_onnx.data import PreprocessSpec, sample_subset, spec_from_model
from agmc_onnx.data.preprocessing import METADATA_KEY
from agmc_onnx.data.splits import subset_rows
from agmc_onnx.errors import DataError, PreconditionError
from agmc_onnx.finetune import FinetuneConfig, Normalization, finetune
from agmc_onnx.finetune.distill import distill
from agmc_onnx.graph.counting import count_cost
from agmc_onnx.graph.versions import converted_from_opset
from agmc_onnx.io import load_model, save_model
from agmc_onnx.progress import ProgressFn, StageEvent, report
from agmc_onnx.prune import kept_channels, prune_model
from agmc_onnx.reconstruct.run import reconstruct_pruned
from agmc_onnx.sanity import describe_spec
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
    """The run's shared inputs; each method is one stage and caches its result in the work directory.

    Construction and ``load_data`` check everything a user can get wrong (model, data, preprocessing, the
    sanity gate) before ``attach`` creates the work directory, so bad input leaves nothing behind.
    """

    def __init__(self, model_path: Path, config: CompressConfig, progress: ProgressFn | None):
        self.config, self._progress = config, progress
        self.work: WorkDirectory | None = None
        self.model = load_model(model_path)
        self.analysis: ModelAnalysis = analyze_model(self.model)
        if not self.analysis.prunable_groups:
            raise PreconditionError(
                f"{Path(model_path).name} has no prunable channel group ({len(self.analysis.groups)} groups, all "
                "pinned); there is nothing to compress — `agmc-onnx inspect` shows why each group is pinned"
            )
        self.spec: PreprocessSpec | None = None
        self._spec_error: DataError | None = None
        try:
            self.spec = spec_from_model(self.model, **config.preprocessing_overrides())
        except DataError as exc:  # not an image model: fine for arrays keyed by input name
            self._spec_error = exc
        self.data: TaskData | None = None

    def tell(self, stage: str, message: str) -> None:
        """Announce a stage: "data" | "baseline" | "search" | "prune" | "finetune" | "evaluate" | "latency"."""
        report(self._progress, StageEvent(stage, message))

    def load_data(self) -> None:
        self.tell("data", f"loading {self.config.data}")
        self.data = prepare_task(self.model, self.config, self.spec, self._spec_error)
        data = self.data
        if self.config.quantize == "int8" and len(data.finetune.inputs) != 1:
            names = ", ".join(info.name for info in data.finetune.inputs)
            raise PreconditionError(f"quantize int8 calibrates one input, but the model has several ({names})")
        self.tell("data", f"task {data.task} ({data.reason}); fidelity metric: {data.metric}")

    def attach(self, work: WorkDirectory) -> None:
        self.work = work

    def baseline(self) -> dict:
        cached = self.work.stage("baseline")
        if cached is None:
            cost = count_cost(self.model)
            cached = {
                "macs": cost.macs,
                "params": cost.params,
                "file_bytes": cost.file_bytes,
                "test_top1": self.data.original_top1,
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
        data = self.data
        return search_model(
            self.analysis,
            data.splits.reward if data.task == "accuracy" else data.reward,
            config.search_config(),
            spec=self.spec,
            task=data.task,
            run_dir=self.work.search_dir,
            resume=resume,
            progress=self._progress,
        )

    def check_latency(self, search: SearchResult) -> tuple[SearchResult, dict | None]:
        """A latency budget closed by measurement (``latency_stage``): the plan to prune, and the checks."""
        if self.config.budget[0] != "latency" or not self.config.check_latency or search.latency_fit is None:
            return search, None
        record = self.work.stage("checked")
        if record is None:
            self.tell("latency", "timing the searched plan as it ships; re-targeting it if it is off the budget")
            record = check_latency(self.analysis, search, self.config.search_config())
            self.work.save_stage("checked", record)
        return with_plan(search, record), record

    def prune(self, search: SearchResult) -> tuple[onnx.ModelProto, dict]:
        """The physically pruned model, oracle-checked, with BatchNormalization statistics re-estimated."""
        path = self.work.model_path("searched")
        cached = self.work.stage("searched")
        if cached is not None and path.exists():
            return load_model(path), cached
        self.tell("prune", "pruning with the best policy and checking the oracle")
        result = prune_model(self.model, search.plan, analysis=self.analysis)
        validate_pruned(self.model, self.analysis, result.selection, result.model)
        pruned = self._refit(search, result)
        check_written_model(self.model, pruned)
        scores = self.test_scores(pruned)
        save_model(pruned, path)
        self.work.save_stage("searched", scores)
        return pruned, scores

    def _refit(self, search: SearchResult, result) -> onnx.ModelProto:
        """Least-squares reconstruction (one-input models), else BatchNormalization statistics re-estimated."""
        if not self.config.reconstruct or len(self.data.finetune.inputs) != 1:
            return search.reward.recalibrated(result.model)
        self.tell("reconstruct", "re-fitting the layers that lost input channels by least squares")
        data = self.data
        source = data.splits.finetune if data.spec is not None else data.finetune
        return reconstruct_pruned(self.analysis, result.selection, result.model, source, data.spec).model

    def test_scores(self, model: onnx.ModelProto) -> dict:
        return {
            "test_top1": self.data.test_top1(model, self._progress),
            "test_fidelity": self.data.test_fidelity(model),
        }

    def finetune(self, pruned: onnx.ModelProto, search: SearchResult) -> onnx.ModelProto:
        config = self.config
        if config.finetune_epochs == 0:
            return pruned
        if self.data.task == "fidelity":
            feeder = self.data.finetune
            if config.finetune_images is not None:
                feeder = feeder.select(subset_rows(feeder.dataset, config.finetune_images, seed=config.seed))
            return self._distill(pruned, feeder)
        data = self.data.splits.finetune
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
            Normalization(tuple(self.spec.mean), tuple(self.spec.std), self.spec.scale, self.spec.layout),
            FinetuneConfig(epochs=config.finetune_epochs, seed=config.seed),
            teacher=self.model if config.distill else None,
            checkpoint_path=self.work.finetune_checkpoint,
            resume=self.work.finetune_checkpoint.exists(),
            progress=self._progress,
            # the plan's channels again (the prune stage may come from the work directory): residual sums
            # that lost channels are distilled on the ones they kept
            feature_channels=kept_channels(self.analysis, search.plan) if config.distill else None,
        )
        check_written_model(self.model, result.model)
        return result.model

    def quantize(self, final: onnx.ModelProto):
        """The INT8 model that ships (calibrated on the fine-tuning inputs, the form faster on the target)."""
        self.tell("quantize", "INT8 on the fine-tuned model; format measured on the target")
        data = self.data
        calibration = data.splits.finetune if data.spec is not None else data.finetune
        return quantize_stage(final, calibration, data.spec, self.config.target).quantized

    def _distill(self, pruned: onnx.ModelProto, data) -> onnx.ModelProto:
        config = self.config
        self.tell("finetune", f"{config.finetune_epochs} epoch(s) of pure distillation on {data.n_samples} inputs")
        result = distill(
            pruned,
            self.model,
            data,
            FinetuneConfig(epochs=config.finetune_epochs, seed=config.seed),
            checkpoint_path=self.work.finetune_checkpoint,
            resume=self.work.finetune_checkpoint.exists(),
            progress=self._progress,
        )
        check_written_model(self.model, result.model)
        return result.model


def _figures(model: onnx.ModelProto, scores: dict, latency=None) -> ModelFigures:
    cost = count_cost(model)
    return ModelFigures(
        cost.macs,
        cost.params,
        cost.file_bytes,
        scores["test_top1"],
        latency.median_ms if latency else None,
        latency.p90_ms if latency else None,
        scores["test_fidelity"],
    )


def _with_preprocessing(model: onnx.ModelProto, spec: PreprocessSpec | None) -> onnx.ModelProto:
    """The output model states the preprocessing it was compressed with, so eval and deployers reuse it."""
    if spec is None:
        return model
    kept = [prop for prop in model.metadata_props if prop.key != METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    onnx.helper.set_model_props(model, {**{p.key: p.value for p in kept}, METADATA_KEY: spec.to_json()})
    return model


def run_compress(
    model_path: Path,
    config: CompressConfig,
    out_dir: Path,
    *,
    restart: bool = False,
    progress: ProgressFn | None = None,
) -> CompressRun:
    """Compress the model at ``model_path`` into ``out_dir`` (nothing is written there but ``.work``).

    Bad input (model, data, preprocessing, the sanity gate) is refused before anything is written.
    """
    started = time.perf_counter()
    stages = _Stages(Path(model_path), config, progress)
    stages.load_data()
    search_config = config.search_config()
    settings = {
        **config.as_dict(),
        "warmup_episodes": search_config.ddpg.warmup_episodes,
        "episodes_per_round": search_config.episodes_per_round,  # the log depends on it, not on the workers
    }
    work = WorkDirectory(out_dir, stage_identities(Path(model_path).read_bytes(), settings), restart)
    stages.attach(work)
    timings: dict[str, float] = {}
    baseline = stages.baseline()
    timings["data+baseline"], clock = time.perf_counter() - started, time.perf_counter()
    search, checked = stages.check_latency(stages.search())
    timings["search"], clock = time.perf_counter() - clock, time.perf_counter()
    searched, searched_scores = stages.prune(search)
    final = _with_preprocessing(stages.finetune(searched, search), stages.spec)
    timings["finetune"], clock = time.perf_counter() - clock, time.perf_counter()
    stages.tell("evaluate", f"test {stages.data.task} of the compressed model")
    final_scores = stages.test_scores(final)
    quantized = stages.quantize(final) if config.quantize == "int8" else None
    shipped = final if quantized is None else quantized.model
    stages.tell("latency", f"paired latency on {config.target}, original against the model that ships")
    def time_shipped():
        return measure_paired(stages.model, shipped, config.target)

    paired = time_shipped()
    if checked is not None:
        paired, final_speedups = settled_timing(paired, time_shipped, checked["measured_fraction"])
        checked = {**checked, "final_speedups": final_speedups}
    timings["evaluate+latency"] = time.perf_counter() - clock
    timings["total"] = time.perf_counter() - started
    report = _build_report(
        stages,
        search,
        _original_figures(baseline, paired),
        _figures(searched, searched_scores),
        _figures(final, final_scores, paired.b if quantized is None else None),
        paired,
        timings,
        str(model_path),
    )
    if quantized is not None:
        int8 = _figures(shipped, stages.test_scores(shipped), paired.b)
        report = _with_int8(report, int8, quantized.quant_format)
    if checked is not None:
        report = dataclasses.replace(report, latency_check={k: v for k, v in checked.items() if k != "keep_ratios"})
    return CompressRun(report, shipped, search, work.resumed)


def _original_figures(baseline: dict, paired) -> ModelFigures:
    return ModelFigures(
        baseline["macs"],
        baseline["params"],
        baseline["file_bytes"],
        baseline["test_top1"],
        paired.a.median_ms,
        paired.a.p90_ms,
        1.0,  # the original agrees with itself
    )


def _judge(config: dict, kind: str, keep: float, achieved: float, original, shipped):
    """Accuracy drop and fidelity loss of the model that ships, and the gate on them."""
    measured = original.test_top1 is not None and shipped.test_top1 is not None
    drop = 100.0 * (original.test_top1 - shipped.test_top1) if measured else None
    fidelity_loss = 100.0 * (1.0 - shipped.test_fidelity)
    gate = evaluate_gate(
        kind, keep, achieved, drop, config["max_accuracy_drop"], fidelity_loss, config["max_fidelity_loss"]
    )
    return drop, fidelity_loss, gate


def _with_int8(report: CompressionReport, int8: ModelFigures, quant_format: str) -> CompressionReport:
    """The INT8 model ships: it gets its row, and the gate judges it."""
    kind, keep = report.budget_kind, report.budget_keep_fraction
    achieved = int8.macs / report.original.macs if kind == "flops" else 1.0 / report.speedup
    drop, fidelity_loss, gate = _judge(report.config, kind, keep, achieved, report.original, int8)
    return dataclasses.replace(
        report,
        quantized=int8,
        quantized_format=quant_format,
        achieved_keep_fraction=achieved,
        accuracy_drop_points=drop,
        fidelity_loss_points=fidelity_loss,
        gate=gate,
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
    drop, fidelity_loss, gate = _judge(dataclasses.asdict(config), kind, keep, achieved, original, final)
    data = stages.data
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
            "reward_images": data.splits.reward.n_images,
            "finetune_images": data.splits.finetune.n_images
            if config.finetune_images is None
            else min(config.finetune_images, data.splits.finetune.n_images),
            "test_images": data.splits.test.n_images,
            "source": str(config.data),
            "labelled": data.splits.labelled,
        },
        timings_s=timings,
        groups=group_channels(stages.analysis, search.plan),
        config=dataclasses.asdict(config),
        task=data.task,
        task_reason=data.reason,
        fidelity_metric=data.metric,
        fidelity_loss_points=fidelity_loss,
        max_fidelity_loss_points=config.max_fidelity_loss,
        preprocessing=describe_spec(data.spec),
        converted_from_opset=converted_from_opset(stages.model),
    )
