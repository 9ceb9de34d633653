"""The sanity gate: before any search, the original model must work on the data it is given.

A classifier scoring at most twice chance on its labelled test set, or outputs that are NaN, infinite,
constant across inputs or far out of any plausible range, mean the data do not reach the model as it
expects (preprocessing, label order, wrong data set). Searching on such a signal only optimises noise, so
the run stops with a message that names the likely causes and the options that fix them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from agmc_onnx.data.preprocessing import PreprocessSpec
from agmc_onnx.errors import SanityCheckError
from agmc_onnx.fidelity import ReferenceOutputs

__all__ = ["check_above_chance", "check_outputs", "describe_spec", "PREPROCESSING_OPTIONS", "OUTPUT_LIMIT"]

PREPROCESSING_OPTIONS = "--layout, --color, --size, --scale, --mean, --std (or the same keys in the config file)"
OUTPUT_LIMIT = 1e6  # |output| beyond this on ordinary inputs means overflow or raw, unnormalised input
_CHANCE_FACTOR = 2.0


def describe_spec(spec: PreprocessSpec | None) -> str:
    if spec is None:
        return "arrays fed as stored (no image preprocessing)"
    size = f"{spec.size[0]}×{spec.size[1]}" if spec.size else "as stored"
    mean = ",".join(f"{v:g}" for v in spec.mean)
    std = ",".join(f"{v:g}" for v in spec.std)
    return f"layout {spec.layout}, color {spec.color}, size {size}, scale {spec.scale:g}, mean {mean}, std {std}"


def check_above_chance(
    top1: float,
    n_classes: int,
    *,
    spec: PreprocessSpec | None,
    source: str,
    dataset_classes: Sequence[str] = (),
    model_labels: Sequence[str] | None = None,
) -> None:
    """SanityCheckError when the original's test top-1 is at most twice chance (1 / ``n_classes``)."""
    if n_classes < 2:
        return
    chance = 1.0 / n_classes
    if top1 > _CHANCE_FACTOR * chance:
        return
    order = (
        f"the dataset's classes {list(dataset_classes)[:10]} in alphabetical folder order must be the model's "
        "output order"
        + (f" (the model's labels: {list(model_labels)[:10]})" if model_labels else "")
    )
    raise SanityCheckError(
        f"the original model scores {100 * top1:.2f} % top-1 on {source}, no better than "
        f"{_CHANCE_FACTOR:g}× chance ({100 * chance:.1f} % for {n_classes} classes), so its accuracy cannot guide "
        f"a search. Likely causes: (1) preprocessing — used {describe_spec(spec)}; fix with {PREPROCESSING_OPTIONS}; "
        f"(2) label order — {order}; (3) the wrong data set — check --data. Without matching labels, "
        "--task fidelity compresses against the original's own outputs"
    )


def check_outputs(reference: ReferenceOutputs, *, spec: PreprocessSpec | None, source: str) -> None:
    """SanityCheckError when any output is NaN/infinite, constant over the inputs, or beyond ``OUTPUT_LIMIT``."""
    hint = f"input used: {describe_spec(spec)}; fix with {PREPROCESSING_OPTIONS}, or check --data"
    constant = []
    for name, value in zip(reference.names, reference.values):
        if value.dtype.kind not in "fc":
            continue
        if not np.isfinite(value).all():
            raise SanityCheckError(f"the original model's output '{name}' is NaN or infinite on {source}; {hint}")
        peak = float(np.abs(value).max(initial=0.0))
        if peak > OUTPUT_LIMIT:
            raise SanityCheckError(
                f"the original model's output '{name}' reaches {peak:.3g} on {source}, far outside the range "
                f"ordinary inputs give (|x| ≤ {OUTPUT_LIMIT:g}); the inputs are probably not scaled as the "
                f"model expects; {hint}"
            )
        rows = value.reshape(len(value), -1).astype(np.float64)
        if len(rows) > 1 and np.ptp(rows, axis=0).max(initial=0.0) <= 1e-6 * max(peak, 1.0):
            constant.append(name)
    floats = [name for name, value in zip(reference.names, reference.values) if value.dtype.kind in "fc"]
    if floats and len(constant) == len(floats):
        raise SanityCheckError(
            f"the original model gives the same output for every input of {source} ({', '.join(constant)}); "
            f"the inputs do not reach it as it expects (e.g. all zero after preprocessing); {hint}"
        )
