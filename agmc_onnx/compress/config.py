"""Options of ``compress``: built-in defaults < the model's sidecar < a TOML file < command-line flags."""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from agmc_onnx.errors import AgmcError
from agmc_onnx.search.budget import one_budget

__all__ = [
    "CompressConfig",
    "ConfigError",
    "resolve_config",
    "read_toml",
    "sidecar_path",
    "TASKS",
    "PREPROCESSING_KEYS",
]

TASKS = ("auto", "accuracy", "fidelity")
PREPROCESSING_KEYS = ("layout", "color", "size", "scale", "mean", "std")


class ConfigError(AgmcError):
    """A configuration file or option is malformed."""


@dataclass(frozen=True)
class CompressConfig:
    target: str = "mobile-cpu"
    flops: float | None = None  # fraction of the original MACs to keep
    latency: float | None = None  # fraction of the original median latency on ``target``
    data: str | None = None
    episodes: int = 100
    policy: str = "agmc"
    finetune_epochs: int = 1
    finetune_images: int | None = None  # cap on fine-tuning images per epoch (None: all)
    max_accuracy_drop: float | None = None  # percentage points of test top-1
    round_to: int = 8
    depth: float | None = None  # depth threshold: a removable group's action below it deletes its branch
    reward_size: int = 1000
    test_size: int = 1000  # only used when the data has no separate test split
    distill: bool = True
    # Least-squares re-fit of the pruned layers before fine-tuning (BN re-estimation only when off).
    reconstruct: bool = True
    seed: int = 0
    quantize: str | None = None  # "int8": quantize after fine-tuning; budgets and the gate see the INT8 model
    # A latency budget's searched plan timed as it ships and re-targeted when it is off by more than 5 %.
    check_latency: bool = True
    task: str = "auto"  # accuracy (labelled top-1) | fidelity (agreement with the original) | auto
    max_fidelity_loss: float | None = None  # percentage points of test fidelity to the original
    # Preprocessing (None: the model's metadata, else detected from its input shape).
    layout: str | None = None
    color: str | None = None
    size: tuple[int, int] | None = None
    scale: float | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    cache_dir: str | None = None  # where decoded images are cached (None: ~/.cache/agmc-onnx)
    workers: int = 1  # reward evaluations in parallel on Ray workers (1: in this process)
    ray_address: str | None = None  # join this Ray cluster instead of starting a local runtime

    def __post_init__(self) -> None:
        for name, kind in (("size", int), ("mean", float), ("std", float)):
            value = getattr(self, name)
            if value is not None:
                try:
                    object.__setattr__(self, name, tuple(kind(v) for v in value))
                except (TypeError, ValueError):
                    raise ConfigError(f"{name} must be a list of numbers, got {value!r}") from None
        if self.size is not None and (len(self.size) != 2 or min(self.size) < 1):
            raise ConfigError(f"size must be [height, width] in pixels, got {list(self.size)}")
        if self.task not in TASKS:
            raise ConfigError(f"task is {self.task!r}; choose one of {', '.join(TASKS)}")
        if self.max_fidelity_loss is not None and not 0 <= self.max_fidelity_loss <= 100:
            raise ConfigError(f"max_fidelity_loss is {self.max_fidelity_loss}; it is in percentage points, 0–100")
        if self.flops is not None or self.latency is not None:
            one_budget(self.flops, self.latency)
        if self.workers < 1:
            raise ConfigError(f"workers is {self.workers}; it must be at least 1")
        if self.episodes < 1 or self.finetune_epochs < 0 or self.round_to < 1 or self.reward_size < 1:
            raise ConfigError("episodes, reward_size and round_to must be positive and finetune_epochs ≥ 0")
        if self.depth is not None and not 0.0 < float(self.depth) < 1.0:
            raise ConfigError(f"depth threshold is {self.depth}; it must lie in (0, 1), e.g. 0.1")
        if self.quantize not in (None, "none", "int8"):
            raise ConfigError(f"quantize is {self.quantize!r}; it is \"int8\" or \"none\"")
        if self.max_accuracy_drop is not None and self.max_accuracy_drop < 0:
            raise ConfigError(f"max_accuracy_drop is {self.max_accuracy_drop}; it must be ≥ 0 percentage points")

    @property
    def budget(self) -> tuple[str, float]:
        """``("flops" | "latency", kept fraction)``; with neither given, half of the MACs."""
        if self.flops is None and self.latency is None:
            return "flops", 0.5
        return one_budget(self.flops, self.latency)

    def search_config(self):
        """The search this configuration asks for (its warm-up scaled to the episodes, as the CLI's)."""
        from agmc_onnx.compress.quantize_stage import search_precision
        from agmc_onnx.search import SearchConfig

        kind, keep = self.budget
        return SearchConfig(
            policy=self.policy,
            n_episodes=self.episodes,
            flops_keep_ratio=keep if kind == "flops" else None,
            latency_keep_ratio=keep if kind == "latency" else None,
            target=self.target,
            round_to=self.round_to,
            depth_threshold=self.depth,
            seed=self.seed,
            workers=self.workers,
            ray_address=self.ray_address,
            latency_precision=search_precision(self.quantize) if kind == "latency" else "fp32",
        )

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def preprocessing_overrides(self) -> dict:
        """The preprocessing keys that were set, as ``PreprocessSpec`` fields."""
        return {key: getattr(self, key) for key in PREPROCESSING_KEYS if getattr(self, key) is not None}


_FIELDS = {f.name for f in dataclasses.fields(CompressConfig)}


def read_toml(path: Path, section: str = "compress") -> dict:
    """Options from ``path``: the ``[compress]`` table, or the top level when there is none.

    A relative ``data`` path is resolved against the file's folder, so a sidecar can ship beside its model.
    """
    try:
        document = tomllib.loads(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read configuration {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    values = dict(document.get(section, document))
    values = {key.replace("-", "_"): value for key, value in values.items()}
    unknown = sorted(set(values) - _FIELDS)
    if unknown:
        raise ConfigError(f"{path}: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(_FIELDS))}")
    if isinstance(values.get("data"), str) and not Path(values["data"]).is_absolute():
        values["data"] = str((Path(path).parent / values["data"]).resolve())
    return values


def sidecar_path(model_path: Path) -> Path:
    """``model.onnx`` may carry its defaults (data, budget) in ``model.compress.toml`` beside it."""
    return model_path.with_name(model_path.stem + ".compress.toml")


def resolve_config(model_path: Path, config_file: Path | None, flags: Mapping[str, object]) -> CompressConfig:
    values: dict = {}
    sidecar = sidecar_path(model_path)
    if sidecar.is_file():
        values.update(read_toml(sidecar))
    if config_file is not None:
        values.update(read_toml(config_file))
    given = {key: value for key, value in flags.items() if value is not None}
    if "flops" in given or "latency" in given:
        # A budget given on the command line replaces the file's budget of either kind.
        values.pop("flops", None)
        values.pop("latency", None)
    values.update(given)
    try:
        return CompressConfig(**values)
    except TypeError as exc:
        raise ConfigError(f"bad configuration: {exc}") from None
