"""Readers for datasets: class folders and zip/tar archives (ImageFolder layout ``CLASS/xxx.jpg``), folders
and archives of images without class folders (unlabelled), and ``.npz`` files.

Label index = position of the class folder name in alphabetical order. Decoded images are converted to
the spec's colour and resized (cover, then centre crop) to its size, so one dataset has one image shape.
An ``.npz`` holds images as ``x`` (with labels ``y``, or without), or arrays keyed by model input name
(any dtype), which become a ``TensorDataset``.
"""

from __future__ import annotations

import io
import logging
import tarfile
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from agmc_onnx.data.dataset import ImageDataset
from agmc_onnx.data.preprocessing import PreprocessSpec
from agmc_onnx.data.tensors import TensorDataset
from agmc_onnx.errors import DataError

__all__ = ["read_source", "source_kind", "IMAGE_SUFFIXES", "ARCHIVE_SUFFIXES", "Dataset"]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".ppm", ".tif", ".tiff")
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2")
Dataset = ImageDataset | TensorDataset
_NO_CLASS = ""  # class name of an image that sits at the top of a folder or archive


def source_kind(path: Path) -> str:
    """'folder', 'zip', 'tar' or 'npz'; DataError for a missing path or an unknown file type."""
    if not path.exists():
        raise DataError(f"dataset not found: {path}")
    if path.is_dir():
        return "folder"
    name = path.name.lower()
    if name.endswith(".npz"):
        return "npz"
    if name.endswith(".zip"):
        return "zip"
    if name.endswith(ARCHIVE_SUFFIXES):
        return "tar"
    raise DataError(
        f"{path}: unknown dataset format; expected a class folder, a .zip/.tar/.tar.gz/.tar.xz archive "
        "or an .npz file"
    )


def read_source(path: Path, spec: PreprocessSpec, input_names: Sequence[str] = ()) -> Dataset:
    """Read and decode a dataset (no caching; see ``agmc_onnx.data.cache.load_dataset``).

    ``input_names`` (the model's inputs) decide how an ``.npz`` is read: keyed by input name, or images.
    """
    kind = source_kind(path)
    if kind == "npz":
        return _read_npz(path, spec, tuple(input_names))
    entries = {"folder": _folder_entries, "zip": _zip_entries, "tar": _tar_entries}[kind](path)
    decoded = [(class_name, name, _decode(data, name, spec)) for class_name, name, data in entries]
    if not decoded:
        raise DataError(f"no images found in {path} (expected CLASS/xxx.jpg|png files, or xxx.jpg|png)")
    decoded.sort(key=lambda item: (item[0], item[1]))
    _check_same_size(decoded)
    images = np.stack([image for _, _, image in decoded])
    classes = tuple(sorted({class_name for class_name, _, _ in decoded}))
    if classes == (_NO_CLASS,):
        log.info("decoded %d unlabelled images from %s", len(images), path)
        return ImageDataset.unlabelled(images, source=str(path))
    if _NO_CLASS in classes:
        loose = next(name for class_name, name, _ in decoded if class_name == _NO_CLASS)
        raise DataError(
            f"{path} mixes class folders with images outside any class folder (e.g. {loose}); keep either "
            "CLASS/xxx.jpg files (labelled) or only loose images (unlabelled)"
        )
    index = {name: i for i, name in enumerate(classes)}
    labels = np.array([index[class_name] for class_name, _, _ in decoded], dtype=np.int64)
    log.info("decoded %d images in %d classes from %s", len(images), len(classes), path)
    return ImageDataset(images, labels, classes, source=str(path))


def _is_ignored(name: str) -> bool:
    """Hidden files and macOS archive metadata are not part of a dataset."""
    return any(part.startswith(".") and part not in (".", "..") for part in PurePosixPath(name).parts) or (
        "__MACOSX" in name
    )


def _is_image(name: str, source: Path) -> bool:
    """True for an image file; DataError for any other file that is not ignored."""
    if _is_ignored(name):
        return False
    if name.lower().endswith(IMAGE_SUFFIXES):
        return True
    raise DataError(
        f"{source} holds {name}, which is not an image ({', '.join(IMAGE_SUFFIXES)}); an image dataset may "
        "hold only images — move other files out, or give an .npz of model inputs"
    )


def _class_of(member: str) -> str:
    parent = PurePosixPath(member).parent.name
    return _NO_CLASS if parent in ("", ".") else parent


def _folder_entries(path: Path) -> Iterator[tuple[str, str, bytes]]:
    for file in sorted(path.rglob("*")):
        relative = file.relative_to(path).as_posix()
        if file.is_file() and _is_image(relative, path):
            top = relative.split("/")[0] if "/" in relative else _NO_CLASS
            yield top, str(file), file.read_bytes()


def _zip_entries(path: Path) -> Iterator[tuple[str, str, bytes]]:
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if not info.is_dir() and _is_image(info.filename, path):
                    yield _class_of(info.filename), f"{path}:{info.filename}", archive.read(info)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise DataError(f"{path} is not a readable zip archive: {exc}") from None


def _tar_entries(path: Path) -> Iterator[tuple[str, str, bytes]]:
    # Iterating members in order streams compressed archives once (random access into .xz is slow).
    try:
        with tarfile.open(path, "r:*") as archive:
            for member in archive:
                if member.isfile() and _is_image(member.name, path):
                    handle = archive.extractfile(member)
                    yield _class_of(member.name), f"{path}:{member.name}", handle.read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(f"{path} is not a readable tar archive: {exc}") from None


def _decode(data: bytes, name: str, spec: PreprocessSpec) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as opened:
            image = opened.convert("L" if spec.color == "L" else "RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"corrupt or unreadable image {name}: {exc}") from None
    if spec.size is not None and image.size != (spec.size[1], spec.size[0]):
        image = _resize_cover(image, spec.size)
    array = np.asarray(image, dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    if spec.color == "BGR":
        array = array[:, :, ::-1]
    return array


def _resize_cover(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Scale so the image covers ``size`` (height, width), then crop the centre."""
    height, width = size
    factor = max(height / image.height, width / image.width)
    new_w, new_h = max(width, round(image.width * factor)), max(height, round(image.height * factor))
    image = image.resize((new_w, new_h), Image.Resampling.BILINEAR)
    left, top = (new_w - width) // 2, (new_h - height) // 2
    return image.crop((left, top, left + width, top + height))


def _check_same_size(decoded: list[tuple[str, str, np.ndarray]]) -> None:
    first_name, first_shape = decoded[0][1], decoded[0][2].shape
    for _, name, image in decoded:
        if image.shape != first_shape:
            raise DataError(
                f"images differ in size ({first_name}: {first_shape[0]}×{first_shape[1]}, "
                f"{name}: {image.shape[0]}×{image.shape[1]}); give a size in the preprocessing spec"
            )


def _read_npz(path: Path, spec: PreprocessSpec, input_names: tuple[str, ...]) -> Dataset:
    try:
        with np.load(path, allow_pickle=False) as arrays:
            contents = {name: arrays[name] for name in arrays.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path} is not a readable .npz file: {exc}") from None
    keyed = bool(input_names) and all(name in contents for name in input_names)
    if "x" in contents and not (keyed and set(input_names) != {"x"}):
        return _read_npz_images(contents, path)
    if input_names and not keyed:
        missing = [name for name in input_names if name not in contents]
        raise DataError(
            f"{path} lacks the model input(s) {missing}; it holds {sorted(contents)}. An .npz of model "
            "inputs needs one array per input, keyed by the input's name (or images as 'x', labels as 'y')"
        )
    return TensorDataset(contents, source=str(path))


def _read_npz_images(contents: dict, path: Path) -> ImageDataset:
    images = _npz_images(contents["x"], path)
    if len(images) == 0:
        raise DataError(f"{path}: 'x' holds no images")
    if "y" not in contents:
        return ImageDataset.unlabelled(images, source=str(path))
    labels = _npz_labels(contents["y"], len(images), path)
    if "classes" in contents:
        classes = tuple(str(c) for c in contents["classes"])
    else:
        classes = tuple(str(i) for i in range(int(labels.max()) + 1 if len(labels) else 0))
    return ImageDataset(images, labels, classes, source=str(path))


def _npz_images(x: np.ndarray, path: Path) -> np.ndarray:
    if x.ndim == 4 and x.dtype == np.uint8 and x.shape[3] in (1, 3):
        return np.ascontiguousarray(x)
    if x.ndim == 4 and np.issubdtype(x.dtype, np.floating) and x.shape[1] in (1, 3):
        low, high = float(x.min(initial=0.0)), float(x.max(initial=0.0))
        if low < 0.0 or high > 1.0:
            raise DataError(
                f"{path}: float 'x' must hold pixels scaled to [0, 1] (not normalised), "
                f"found [{low:.3g}, {high:.3g}]"
            )
        return np.ascontiguousarray(np.rint(x.transpose(0, 2, 3, 1) * 255.0).astype(np.uint8))
    raise DataError(
        f"{path}: 'x' has dtype {x.dtype} and shape {x.shape}; expected float N×C×H×W in [0, 1] "
        "or uint8 N×H×W×C, with C = 1 or 3"
    )


def _npz_labels(y: np.ndarray, n_images: int, path: Path) -> np.ndarray:
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{path}: 'y' must be a 1-D integer label array, got {y.dtype} with shape {y.shape}")
    if len(y) != n_images:
        raise DataError(f"{path}: {len(y)} labels in 'y' but {n_images} images in 'x'; they must match")
    if len(y) and y.min() < 0:
        raise DataError(f"{path}: labels must be ≥ 0, found {int(y.min())}")
    return y.astype(np.int64)
