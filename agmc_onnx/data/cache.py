"""``load_dataset``: read a dataset once, keep the decoded uint8 arrays on disk, reuse them afterwards.

The cache key is a content hash of the source (archive bytes; for a folder, every file's path, size and
modification time) plus what decoding depends on (colour, size), so a changed source or spec never hits
a stale entry.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from agmc_onnx.data.dataset import ImageDataset
from agmc_onnx.data.preprocessing import PreprocessSpec, check_images_fit
from agmc_onnx.data.sources import Dataset, read_source, source_kind

__all__ = ["load_dataset", "default_cache_dir", "cache_path"]

log = logging.getLogger(__name__)

# Bump when the decoder changes what it produces for the same input, so old entries are not reused.
_DECODER_VERSION = 1


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "agmc-onnx"


def load_dataset(
    path: str | os.PathLike,
    spec: PreprocessSpec | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    input_names: Sequence[str] = (),
) -> Dataset:
    """Load a folder, archive or .npz as an ``ImageDataset`` fitted to ``spec`` (or, for an .npz keyed by
    the model's ``input_names``, a ``TensorDataset``).

    Decoded folders and archives are cached under ``cache_dir`` (default ``~/.cache/agmc-onnx``);
    ``.npz`` files are already arrays and are read directly.
    """
    path = Path(path)
    spec = spec or PreprocessSpec()
    kind = source_kind(path)
    if kind == "npz" or not use_cache:
        dataset = read_source(path, spec, input_names)
    else:
        dataset = _load_cached(path, spec, Path(cache_dir) if cache_dir else default_cache_dir())
    if isinstance(dataset, ImageDataset):
        check_images_fit(dataset.images, spec, source=str(path))
    return dataset


def cache_path(path: str | os.PathLike, spec: PreprocessSpec, cache_dir: str | os.PathLike) -> Path:
    """Where the decoded arrays of ``path`` under ``spec`` are (or would be) cached."""
    path = Path(path)
    digest = hashlib.sha256()
    digest.update(f"v{_DECODER_VERSION}|{spec.color}|{spec.size}|".encode())
    _hash_source(path, digest)
    stem = path.name.split(".")[0] or "dataset"
    return Path(cache_dir) / f"{stem}-{digest.hexdigest()[:20]}.npz"


def _hash_source(path: Path, digest: "hashlib._Hash") -> None:
    if path.is_dir():
        # Hashing every byte of a large folder would cost as much as decoding it; stat data is enough.
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            stat = file.stat()
            digest.update(f"{file.relative_to(path)}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
        return
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)


def _load_cached(path: Path, spec: PreprocessSpec, cache_dir: Path) -> ImageDataset:
    entry = cache_path(path, spec, cache_dir)
    if entry.exists():
        try:
            with np.load(entry, allow_pickle=False) as arrays:
                dataset = ImageDataset(
                    arrays["images"],
                    arrays["labels"],
                    tuple(str(c) for c in arrays["classes"]),
                    source=str(path),
                    from_cache=True,
                )
            log.info("read %d cached images for %s from %s", dataset.n_images, path, entry)
            return dataset
        except (OSError, KeyError, ValueError, zipfile.BadZipFile, EOFError) as exc:
            log.warning("ignoring unreadable cache entry %s (%s); decoding again", entry, exc)
    dataset = read_source(path, spec)
    _write_entry(entry, dataset)
    return dataset


def _write_entry(entry: Path, dataset: ImageDataset) -> None:
    """Write atomically (temporary file, then rename) so a crash never leaves a half-written entry."""
    tmp_name = None
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{entry.stem}.", suffix=".npz", dir=entry.parent)
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, images=dataset.images, labels=dataset.labels, classes=np.array(dataset.classes))
        os.replace(tmp_name, entry)
    except OSError as exc:
        # A read-only or full cache directory must not stop the run; the next run decodes again.
        log.warning("could not write dataset cache %s: %s", entry, exc)
        if tmp_name is not None:
            Path(tmp_name).unlink(missing_ok=True)
