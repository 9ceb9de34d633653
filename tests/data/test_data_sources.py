"""Loaders for every dataset format, and the clear errors for broken input."""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import pytest
from tiny_datasets import (
    CLASSES,
    IMAGES_PER_CLASS,
    SIZE,
    class_color,
    expected_labels,
    make_archive,
)

from agmc_onnx.data import PreprocessSpec, load_dataset
from agmc_onnx.errors import DataError

NO_CACHE = {"use_cache": False}


def test_folder_loads_labels_in_alphabetical_class_order(image_folder: Path) -> None:
    dataset = load_dataset(image_folder, PreprocessSpec(size=(SIZE, SIZE)), **NO_CACHE)
    assert dataset.classes == CLASSES
    assert dataset.images.shape == (len(CLASSES) * IMAGES_PER_CLASS, SIZE, SIZE, 3)
    assert dataset.images.dtype == np.uint8
    np.testing.assert_array_equal(dataset.labels, expected_labels())
    # PNG is lossless: every pixel is its class colour.
    np.testing.assert_array_equal(dataset.images[0, 0, 0], class_color(0))
    np.testing.assert_array_equal(dataset.images[-1, 0, 0], class_color(2))


def test_archives_load_like_the_folder(image_archive: Path) -> None:
    dataset = load_dataset(image_archive, PreprocessSpec(size=(SIZE, SIZE)), **NO_CACHE)
    assert dataset.classes == CLASSES
    np.testing.assert_array_equal(dataset.labels, expected_labels())
    brightest_channel = dataset.images.reshape(len(dataset.labels), -1, 3).mean(axis=1).argmax(axis=1)
    np.testing.assert_array_equal(
        brightest_channel, dataset.labels
    )  # JPEG is lossy; the class colour survives


def test_images_are_resized_and_centre_cropped_to_the_spec_size(image_folder: Path) -> None:
    dataset = load_dataset(image_folder, PreprocessSpec(size=(4, 6)), **NO_CACHE)
    assert dataset.image_size == (4, 6)


def test_grayscale_spec_gives_one_channel(image_folder: Path) -> None:
    spec = PreprocessSpec(color="L", size=(SIZE, SIZE), mean=(0.5,), std=(0.25,))
    assert load_dataset(image_folder, spec, **NO_CACHE).n_channels == 1


def test_npz_uint8_nhwc_and_float_nchw_give_the_same_images(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    nhwc = rng.integers(0, 256, size=(5, SIZE, SIZE, 3), dtype=np.uint8)
    labels = np.array([0, 1, 1, 0, 2])
    np.savez(tmp_path / "u8.npz", x=nhwc, y=labels)
    np.savez(tmp_path / "f32.npz", x=nhwc.transpose(0, 3, 1, 2).astype(np.float32) / 255.0, y=labels)
    spec = PreprocessSpec(size=(SIZE, SIZE))
    from_u8, from_f32 = load_dataset(tmp_path / "u8.npz", spec), load_dataset(tmp_path / "f32.npz", spec)
    np.testing.assert_array_equal(from_u8.images, nhwc)
    np.testing.assert_array_equal(from_f32.images, nhwc)
    np.testing.assert_array_equal(from_f32.labels, labels)
    assert from_u8.classes == ("0", "1", "2")


def test_npz_class_names_are_read_when_present(tmp_path: Path) -> None:
    np.savez(
        tmp_path / "d.npz",
        x=np.zeros((2, 4, 4, 3), np.uint8),
        y=np.array([0, 1]),
        classes=np.array(["a", "b"]),
    )
    assert load_dataset(tmp_path / "d.npz").classes == ("a", "b")


@pytest.mark.parametrize(
    ("x", "y", "message"),
    [
        (np.zeros((4, 8, 8), np.uint8), np.zeros(4, np.int64), "expected float N×C×H×W"),
        (np.zeros((4, 3, 8, 8), np.uint8), np.zeros(4, np.int64), "expected float N×C×H×W"),
        (np.zeros((4, 8, 8, 3), np.uint8), np.zeros(3, np.int64), "3 labels in 'y' but 4 images"),
        (np.zeros((4, 8, 8, 3), np.uint8), np.zeros((4, 2), np.int64), "1-D integer label array"),
        (np.full((4, 3, 8, 8), 2.0, np.float32), np.zeros(4, np.int64), "scaled to [0, 1]"),
    ],
    ids=["rank-3", "uint8-nchw", "label-count", "label-shape", "float-not-unit-range"],
)
def test_npz_with_wrong_arrays_is_rejected(
    tmp_path: Path, x: np.ndarray, y: np.ndarray, message: str
) -> None:
    np.savez(tmp_path / "bad.npz", x=x, y=y)
    with pytest.raises(DataError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_dataset(tmp_path / "bad.npz")


def test_npz_images_without_y_are_unlabelled(tmp_path: Path) -> None:
    np.savez(tmp_path / "images.npz", x=np.zeros((2, 4, 4, 3), np.uint8))
    dataset = load_dataset(tmp_path / "images.npz")
    assert not dataset.labelled and dataset.classes == ()
    np.testing.assert_array_equal(dataset.labels, [-1, -1])


def test_npz_images_that_do_not_fit_the_model_are_rejected(tmp_path: Path) -> None:
    np.savez(tmp_path / "small.npz", x=np.zeros((2, 28, 28, 3), np.uint8), y=np.array([0, 1]))
    np.savez(tmp_path / "gray.npz", x=np.zeros((2, 32, 32, 1), np.uint8), y=np.array([0, 1]))
    spec = PreprocessSpec(size=(32, 32))
    with pytest.raises(DataError, match="images are 28×28 but the model expects 32×32"):
        load_dataset(tmp_path / "small.npz", spec)
    with pytest.raises(DataError, match=r"1 channel\(s\) but the model expects 3"):
        load_dataset(tmp_path / "gray.npz", spec)


def test_missing_path_is_reported(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="dataset not found: .*nowhere"):
        load_dataset(tmp_path / "nowhere")


def test_empty_folder_is_reported(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images found"):
        load_dataset(tmp_path / "empty", **NO_CACHE)
    (tmp_path / "empty" / "cat").mkdir()
    with pytest.raises(DataError, match="no images found"):
        load_dataset(tmp_path / "empty", **NO_CACHE)


def test_corrupt_image_in_folder_is_named(image_folder: Path) -> None:
    (image_folder / "dog" / "0002.png").write_bytes(b"not a png at all")
    with pytest.raises(DataError, match=r"corrupt or unreadable image .*dog/0002\.png"):
        load_dataset(image_folder, PreprocessSpec(size=(SIZE, SIZE)), **NO_CACHE)


def test_corrupt_image_in_archive_is_named(image_folder: Path, tmp_path: Path) -> None:
    (image_folder / "frog" / "0001.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    archive = make_archive(image_folder, tmp_path / "data.tar.gz")
    with pytest.raises(DataError, match=r"data\.tar\.gz:\./frog/0001\.png"):
        load_dataset(archive, PreprocessSpec(size=(SIZE, SIZE)), **NO_CACHE)


def test_archive_of_loose_images_is_unlabelled(tmp_path: Path) -> None:
    from PIL import Image

    with tarfile.open(tmp_path / "flat.tar", "w") as archive:
        for index in range(3):
            Image.new("RGB", (4, 4), (index, 0, 0)).save(tmp_path / f"{index}.png")
            archive.add(tmp_path / f"{index}.png", f"{index}.png")
    dataset = load_dataset(tmp_path / "flat.tar", **NO_CACHE)
    assert not dataset.labelled and dataset.n_images == 3
    np.testing.assert_array_equal(dataset.images[:, 0, 0, 0], [0, 1, 2])


def test_loose_images_beside_class_folders_are_rejected(image_folder: Path) -> None:
    from PIL import Image

    Image.new("RGB", (SIZE, SIZE)).save(image_folder / "stray.png")
    with pytest.raises(DataError, match="mixes class folders with images outside any class folder"):
        load_dataset(image_folder, **NO_CACHE)


def test_folder_of_loose_images_is_unlabelled_and_rejects_other_files(tmp_path: Path) -> None:
    from PIL import Image

    for index in range(4):
        Image.new("RGB", (SIZE, SIZE), (10 * index, 0, 0)).save(tmp_path / f"{index:02d}.png")
    (tmp_path / ".DS_Store").write_bytes(b"ignored")
    dataset = load_dataset(tmp_path, **NO_CACHE)
    assert not dataset.labelled and dataset.n_images == 4
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(DataError, match=r"notes\.txt, which is not an image"):
        load_dataset(tmp_path, **NO_CACHE)


def test_npz_keyed_by_input_name_is_a_tensor_dataset_and_a_missing_input_is_named(tmp_path: Path) -> None:
    np.savez(tmp_path / "tokens.npz", input_ids=np.arange(12, dtype=np.int64).reshape(3, 4))
    dataset = load_dataset(tmp_path / "tokens.npz", input_names=("input_ids",))
    assert dataset.n_samples == 3 and dataset.arrays["input_ids"].dtype == np.int64
    np.testing.assert_array_equal(dataset.select(np.array([2])).arrays["input_ids"], [[8, 9, 10, 11]])
    with pytest.raises(DataError, match=r"lacks the model input\(s\) \['attention_mask'\]"):
        load_dataset(tmp_path / "tokens.npz", input_names=("input_ids", "attention_mask"))


def test_unknown_file_type_and_truncated_archive_are_reported(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match="unknown dataset format"):
        load_dataset(tmp_path / "notes.txt")
    (tmp_path / "broken.tar.xz").write_bytes(b"\xfd7zXZ\x00 garbage")
    with pytest.raises(DataError, match="not a readable tar archive"):
        load_dataset(tmp_path / "broken.tar.xz", **NO_CACHE)


def test_images_of_different_sizes_need_a_size(tmp_path: Path) -> None:
    from PIL import Image

    (tmp_path / "d" / "a").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(tmp_path / "d" / "a" / "1.png")
    Image.new("RGB", (6, 6)).save(tmp_path / "d" / "a" / "2.png")
    with pytest.raises(DataError, match="images differ in size"):
        load_dataset(tmp_path / "d", PreprocessSpec(), **NO_CACHE)
    assert load_dataset(tmp_path / "d", PreprocessSpec(size=(4, 4)), **NO_CACHE).image_size == (4, 4)
