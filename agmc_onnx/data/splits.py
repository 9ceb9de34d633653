"""Which files hold train and test data, and the seeded reward / fine-tuning / test split.

A dataset path may be one source (class folder, archive, .npz) or a folder holding a
``NAME_train.*`` / ``NAME_test.*`` pair (or ``train/`` and ``test/`` class folders).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agmc_onnx.data.cache import load_dataset
from agmc_onnx.data.preprocessing import PreprocessSpec
from agmc_onnx.data.sources import ARCHIVE_SUFFIXES, Dataset
from agmc_onnx.errors import DataError

__all__ = [
    "SplitSources",
    "DataSplits",
    "resolve_splits",
    "load_split",
    "load_splits",
    "balanced_order",
    "sample_subset",
    "subset_rows",
    "split_train",
    "SPLIT_NAMES",
]

SPLIT_NAMES = ("train", "test")
_DATA_SUFFIXES = ARCHIVE_SUFFIXES + (".npz",)


@dataclass(frozen=True)
class SplitSources:
    """Paths of the train and test sources; ``test`` is None when only one source was given."""

    train: Path
    test: Path | None

    def for_split(self, split: str) -> Path:
        """The source for ``split``; a lone source serves both splits."""
        if split not in SPLIT_NAMES:
            raise DataError(f"unknown split {split!r}; choose one of {SPLIT_NAMES}")
        return self.test if split == "test" and self.test is not None else self.train


@dataclass(frozen=True, eq=False)
class DataSplits:
    """Disjoint sets for a compression run: reward (held out of train), fine-tuning (rest of train), test."""

    reward: Dataset
    finetune: Dataset
    test: Dataset

    @property
    def labelled(self) -> bool:
        return self.reward.labelled and self.test.labelled


def resolve_splits(path: str | os.PathLike) -> SplitSources:
    """Find the train/test sources a dataset path names (see the module docstring)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"dataset not found: {path}")
    if path.is_file():
        return SplitSources(train=path, test=None)
    pairs: dict[str, dict[str, Path]] = {}
    for file in sorted(path.iterdir()):
        if not file.is_file():
            continue
        for split in SPLIT_NAMES:
            for suffix in _DATA_SUFFIXES:
                marker = f"_{split}{suffix}"
                if file.name.lower().endswith(marker):
                    pairs.setdefault(file.name[: -len(marker)], {})[split] = file
    if len(pairs) > 1:
        names = ", ".join(sorted(pairs))
        raise DataError(f"{path} holds several datasets ({names}); pass one of their files instead")
    if pairs:
        (found,) = pairs.values()
        if "train" not in found:
            return SplitSources(train=found["test"], test=None)
        return SplitSources(train=found["train"], test=found.get("test"))
    if (path / "train").is_dir() and (path / "test").is_dir():
        return SplitSources(train=path / "train", test=path / "test")
    return SplitSources(train=path, test=None)


def balanced_order(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """A seeded permutation whose every prefix is as class-balanced as the data allows.

    Shuffle, then order by each image's rank within its class: the first k indices take about k/C per class.
    """
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(len(labels))
    rank_in_class = np.empty(len(labels), dtype=np.int64)
    seen: dict[int, int] = {}
    for position, index in enumerate(shuffled):
        label = int(labels[index])
        rank_in_class[position] = seen.get(label, 0)
        seen[label] = rank_in_class[position] + 1
    return shuffled[np.lexsort((np.arange(len(labels)), rank_in_class))]


def sample_subset(dataset: Dataset, n_images: int, seed: int = 0) -> Dataset:
    """A seeded, class-balanced subset of ``n_images`` images (the whole set if it is smaller)."""
    if n_images >= dataset.n_images and n_images > 0:
        return dataset
    return dataset.select(subset_rows(dataset, n_images, seed))


def subset_rows(dataset: Dataset, n_images: int, seed: int = 0) -> np.ndarray:
    """The sorted rows ``sample_subset`` picks (all rows when ``n_images`` covers the set)."""
    if n_images <= 0:
        raise DataError(f"a subset needs at least 1 image, got {n_images}")
    return np.sort(balanced_order(dataset.labels, seed)[:n_images])


def split_train(train: Dataset, reward_size: int = 1000, seed: int = 0) -> tuple[Dataset, Dataset]:
    """(reward, finetune): a seeded class-balanced reward set held out of ``train``, and the rest."""
    if not 0 < reward_size < train.n_images:
        raise DataError(
            f"reward set of {reward_size} images cannot be held out of {train.n_images} training images; "
            "choose a reward size between 1 and the training set size − 1"
        )
    order = balanced_order(train.labels, seed)
    return train.select(np.sort(order[:reward_size])), train.select(np.sort(order[reward_size:]))


def load_split(
    path: str | os.PathLike,
    split: str = "test",
    spec: PreprocessSpec | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    input_names: Sequence[str] = (),
) -> Dataset:
    """Load one split (``train`` or ``test``) of a dataset path."""
    source = resolve_splits(path).for_split(split)
    return load_dataset(source, spec, cache_dir=cache_dir, use_cache=use_cache, input_names=input_names)


def load_splits(
    path: str | os.PathLike,
    spec: PreprocessSpec | None = None,
    *,
    reward_size: int = 1000,
    test_size: int = 1000,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    input_names: Sequence[str] = (),
) -> DataSplits:
    """Reward, fine-tuning and test sets. Without a separate test source, ``test_size`` images are held out
    of the single source first (seeded, class-balanced)."""
    sources = resolve_splits(path)
    options = {"cache_dir": cache_dir, "use_cache": use_cache, "input_names": input_names}
    train = load_dataset(sources.train, spec, **options)
    if sources.test is not None:
        test = load_dataset(sources.test, spec, **options)
    else:
        test, train = split_train(train, reward_size=test_size, seed=seed + 1)
    reward, finetune = split_train(train, reward_size=reward_size, seed=seed)
    return DataSplits(reward=reward, finetune=finetune, test=test)
