"""What ``compress`` optimises: test accuracy (labelled data whose classes fit the model) or fidelity to the
original's outputs (no labels needed), and the data bound to the model for it, checked before any search.

``prepare_task`` loads the splits, binds them to the model's inputs, runs the original once on the test
inputs and refuses data the model cannot read (the sanity gate); everything here happens before the run
writes anything.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import onnx

from agmc_onnx.compress.config import TASKS, CompressConfig, ConfigError
from agmc_onnx.data import DataSplits, PreprocessSpec, labels_from_metadata, load_splits, model_metadata
from agmc_onnx.data.dataset import ImageDataset
from agmc_onnx.data.feeds import Feeder, model_inputs
from agmc_onnx.errors import DataError
from agmc_onnx.evaluate import evaluate_accuracy
from agmc_onnx.fidelity import ReferenceOutputs, evaluate_fidelity, metric_name, run_outputs
from agmc_onnx.progress import ProgressFn
from agmc_onnx.sanity import check_above_chance, check_outputs

__all__ = ["TaskData", "prepare_task", "TASKS"]

log = logging.getLogger(__name__)

@dataclass(frozen=True, eq=False)
class TaskData:
    """The chosen task, the splits bound to the model, and the original's outputs on the test inputs."""

    task: str  # "accuracy" | "fidelity"
    reason: str  # why this task (for the report)
    spec: PreprocessSpec | None  # None for arrays keyed by input name
    splits: DataSplits
    reward: Feeder
    finetune: Feeder
    test: Feeder
    reference: ReferenceOutputs
    original_top1: float | None

    @property
    def metric(self) -> str:
        return metric_name(self.reference)

    def test_top1(self, model: onnx.ModelProto, progress: ProgressFn | None = None) -> float | None:
        if self.task != "accuracy":
            return None
        return evaluate_accuracy(model, self.splits.test, self.spec, progress=progress).top1

    def test_fidelity(self, model: onnx.ModelProto) -> float:
        return evaluate_fidelity(model, self.test, self.reference).score


def prepare_task(
    model: onnx.ModelProto, config: CompressConfig, spec: PreprocessSpec | None, spec_error: DataError | None
) -> TaskData:
    """Load and bind the data, choose the task, and run the sanity gate on the original model."""
    if config.data is None:
        raise DataError("compress needs data: give --data (or a [compress] data entry in a config file)")
    inputs = model_inputs(model)
    splits = load_splits(
        config.data,
        spec,
        reward_size=config.reward_size,
        test_size=config.test_size,
        seed=config.seed,
        cache_dir=config.cache_dir,
        input_names=tuple(info.name for info in inputs),
    )
    if not isinstance(splits.test, ImageDataset):
        spec = None  # arrays keyed by input name are fed as stored
    elif spec is None:
        raise spec_error or DataError("images need a preprocessing spec")
    test = Feeder(splits.test, inputs, spec)
    reference = run_outputs(model, test)
    source = str(config.data)
    check_outputs(reference, spec=spec, source=source)
    task, reason = _choose_task(config.task, splits, reference, model)
    top1 = None
    if task == "accuracy":
        top1 = evaluate_accuracy(model, splits.test, spec).top1
        check_above_chance(
            top1,
            len(splits.test.classes),
            spec=spec,
            source=source,
            dataset_classes=splits.test.classes,
            model_labels=labels_from_metadata(model_metadata(model)),
        )
    log.info("compress task: %s (%s)", task, reason)
    return TaskData(
        task,
        reason,
        spec,
        splits,
        Feeder(splits.reward, inputs, spec),
        Feeder(splits.finetune, inputs, spec),
        test,
        reference,
        top1,
    )


def _choose_task(requested: str, splits: DataSplits, reference: ReferenceOutputs, model) -> tuple[str, str]:
    if requested == "fidelity":
        return "fidelity", "requested"
    mismatch = _class_mismatch(splits, reference, model)
    if requested == "accuracy":
        if mismatch:
            raise ConfigError(f"task accuracy: {mismatch}; use --task fidelity to compress without labels")
        return "accuracy", "requested"
    if mismatch:
        return "fidelity", mismatch
    return "accuracy", f"labelled data whose {len(splits.test.classes)} classes match the model's scores"


def _class_mismatch(splits: DataSplits, reference: ReferenceOutputs, model) -> str:
    """Why labelled top-1 cannot be measured on these data ("" when it can)."""
    if not splits.labelled:
        return f"{splits.test.source or 'the data'} has no labels"
    if metric_name(reference) != "top-1 agreement":
        return "the model's output is not one vector of class scores"
    classes = splits.test.classes
    n_scores = reference.values[0].reshape(reference.n_samples, -1).shape[1]
    if classes == tuple(str(i) for i in range(len(classes))) and len(classes) <= n_scores:
        return ""  # labels that are score indices (an .npz without class names) may miss the top classes
    model_labels = labels_from_metadata(model_metadata(model))
    if model_labels is not None:
        unknown = [name for name in classes if name not in model_labels]
        if unknown:
            return f"classes {unknown[:5]} of the data are not among the model's labels"
        return ""
    if len(classes) != n_scores:
        return f"the data have {len(classes)} classes but the model outputs {n_scores} scores"
    return ""
