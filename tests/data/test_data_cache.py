"""The decode cache: the second load reads arrays from disk; a changed source or spec misses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tiny_datasets import SIZE

from agmc_onnx.data import PreprocessSpec, cache_path, load_dataset


def test_second_load_hits_the_cache_with_identical_arrays(image_archive: Path, tmp_path: Path) -> None:
    spec = PreprocessSpec(size=(SIZE, SIZE))
    first = load_dataset(image_archive, spec, cache_dir=tmp_path / "cache")
    second = load_dataset(image_archive, spec, cache_dir=tmp_path / "cache")
    assert not first.from_cache
    assert second.from_cache
    assert cache_path(image_archive, spec, tmp_path / "cache").is_file()
    np.testing.assert_array_equal(first.images, second.images)
    np.testing.assert_array_equal(first.labels, second.labels)
    assert first.classes == second.classes


def test_cache_key_follows_content_and_spec(image_archive: Path, tmp_path: Path) -> None:
    spec = PreprocessSpec(size=(SIZE, SIZE))
    key = cache_path(image_archive, spec, tmp_path)
    assert cache_path(image_archive, spec.replace(size=(4, 4)), tmp_path) != key
    # mean/std are applied after decoding, so they must not split the cache.
    assert cache_path(image_archive, spec.replace(mean=(0.5, 0.5, 0.5)), tmp_path) == key
    with open(image_archive, "ab") as handle:
        handle.write(b"\0")
    assert cache_path(image_archive, spec, tmp_path) != key


def test_folder_cache_misses_after_a_file_changes(image_folder: Path, tmp_path: Path) -> None:
    spec = PreprocessSpec(size=(SIZE, SIZE))
    load_dataset(image_folder, spec, cache_dir=tmp_path / "cache")
    (image_folder / "cat" / "0000.png").unlink()
    reloaded = load_dataset(image_folder, spec, cache_dir=tmp_path / "cache")
    assert not reloaded.from_cache
    assert reloaded.n_images == 11


def test_unreadable_cache_entry_is_decoded_again(image_folder: Path, tmp_path: Path) -> None:
    spec = PreprocessSpec(size=(SIZE, SIZE))
    entry = cache_path(image_folder, spec, tmp_path / "cache")
    entry.parent.mkdir(parents=True)
    entry.write_bytes(b"garbage")
    dataset = load_dataset(image_folder, spec, cache_dir=tmp_path / "cache")
    assert not dataset.from_cache
    assert load_dataset(image_folder, spec, cache_dir=tmp_path / "cache").from_cache


def test_unwritable_cache_dir_does_not_stop_loading(image_folder: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache folder should be")
    dataset = load_dataset(image_folder, PreprocessSpec(size=(SIZE, SIZE)), cache_dir=blocker)
    assert dataset.n_images == 12 and not dataset.from_cache
