"""Dataset path resolution and the seeded reward / fine-tuning / test split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agmc_onnx.data import (
    ImageDataset,
    balanced_order,
    load_split,
    load_splits,
    resolve_splits,
    sample_subset,
    split_train,
)
from agmc_onnx.errors import DataError


def _npz(path: Path, n_images: int, n_classes: int = 4) -> Path:
    images = np.arange(n_images, dtype=np.uint8)[:, None, None, None].repeat(3, axis=3)  # pixel = index % 256
    np.savez(path, x=np.broadcast_to(images, (n_images, 2, 2, 3)).copy(), y=np.arange(n_images) % n_classes)
    return path


def _dataset(n_images: int, n_classes: int = 4) -> ImageDataset:
    ids = np.arange(n_images)
    images = np.zeros((n_images, 2, 2, 3), np.uint8)
    images[:, 0, 0, 0], images[:, 0, 0, 1] = ids % 256, ids // 256  # each image carries its index
    return ImageDataset(images, (ids % n_classes).astype(np.int64), tuple("abcdefghij"[:n_classes]))


def _ids(dataset: ImageDataset) -> set[int]:
    return set(
        (dataset.images[:, 0, 0, 0].astype(int) + 256 * dataset.images[:, 0, 0, 1].astype(int)).tolist()
    )


def test_pair_folder_resolves_to_train_and_test(tmp_path: Path) -> None:
    train, test = _npz(tmp_path / "toy_train.npz", 8), _npz(tmp_path / "toy_test.npz", 4)
    (tmp_path / "toy_model.onnx").write_bytes(b"")  # other files beside the pair are ignored
    sources = resolve_splits(tmp_path)
    assert (sources.train, sources.test) == (train, test)
    assert sources.for_split("test") == test


def test_single_source_serves_both_splits(tmp_path: Path) -> None:
    path = _npz(tmp_path / "all.npz", 8)
    sources = resolve_splits(path)
    assert sources.test is None
    assert sources.for_split("test") == sources.for_split("train") == path
    with pytest.raises(DataError, match="unknown split 'val'"):
        sources.for_split("val")


def test_train_and_test_subfolders_are_a_pair(tmp_path: Path) -> None:
    (tmp_path / "train" / "a").mkdir(parents=True)
    (tmp_path / "test" / "a").mkdir(parents=True)
    sources = resolve_splits(tmp_path)
    assert (sources.train, sources.test) == (tmp_path / "train", tmp_path / "test")


def test_two_pairs_in_one_folder_are_ambiguous(tmp_path: Path) -> None:
    for name in ("a_train.npz", "a_test.npz", "b_train.npz", "b_test.npz"):
        _npz(tmp_path / name, 4)
    with pytest.raises(DataError, match="holds several datasets \\(a, b\\)"):
        resolve_splits(tmp_path)


def test_missing_dataset_path_is_reported(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="dataset not found"):
        resolve_splits(tmp_path / "missing")


def test_balanced_order_is_seeded_and_balanced() -> None:
    labels = np.repeat(np.arange(5), 40)
    order = balanced_order(labels, seed=3)
    np.testing.assert_array_equal(order, balanced_order(labels, seed=3))
    assert not np.array_equal(order, balanced_order(labels, seed=4))
    assert sorted(order.tolist()) == list(range(200))
    np.testing.assert_array_equal(np.bincount(labels[order[:50]]), [10] * 5)


def test_split_train_is_deterministic_disjoint_and_complete() -> None:
    train = _dataset(500)
    reward, finetune = split_train(train, reward_size=100, seed=0)
    again, _ = split_train(train, reward_size=100, seed=0)
    assert (reward.n_images, finetune.n_images) == (100, 400)
    assert _ids(reward) == _ids(again)
    assert _ids(reward).isdisjoint(_ids(finetune))
    assert _ids(reward) | _ids(finetune) == set(range(500))
    np.testing.assert_array_equal(np.bincount(reward.labels), [25] * 4)


def test_reward_set_larger_than_train_is_rejected() -> None:
    with pytest.raises(DataError, match="cannot be held out of 50 training images"):
        split_train(_dataset(50), reward_size=50)


def test_load_splits_with_a_pair_uses_the_test_file(tmp_path: Path) -> None:
    _npz(tmp_path / "toy_train.npz", 40)
    _npz(tmp_path / "toy_test.npz", 12)
    splits = load_splits(tmp_path, reward_size=8)
    assert (splits.reward.n_images, splits.finetune.n_images, splits.test.n_images) == (8, 32, 12)


def test_load_splits_on_one_source_holds_out_a_disjoint_test_set(tmp_path: Path) -> None:
    path = tmp_path / "all.npz"
    dataset = _dataset(300)
    np.savez(path, x=dataset.images, y=dataset.labels)
    splits = load_splits(path, reward_size=50, test_size=60, seed=1)
    parts = [_ids(splits.reward), _ids(splits.finetune), _ids(splits.test)]
    assert [len(p) for p in parts] == [50, 190, 60]
    assert set.union(*parts) == set(range(300))
    assert sum(len(p) for p in parts) == 300  # pairwise disjoint


def test_sample_subset_is_seeded_and_class_balanced() -> None:
    dataset = _dataset(400)
    subset = sample_subset(dataset, 40, seed=0)
    assert _ids(subset) == _ids(sample_subset(dataset, 40, seed=0))
    np.testing.assert_array_equal(np.bincount(subset.labels), [10] * 4)
    assert sample_subset(dataset, 1000) is dataset


def test_load_split_reads_the_named_split(tmp_path: Path) -> None:
    _npz(tmp_path / "toy_train.npz", 40)
    _npz(tmp_path / "toy_test.npz", 12)
    assert load_split(tmp_path, "train").n_images == 40
    assert load_split(tmp_path, "test").n_images == 12
