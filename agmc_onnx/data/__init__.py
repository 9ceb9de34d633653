"""Datasets: sources (folders, archives, .npz), preprocessing specs, the decode cache and seeded splits."""

from agmc_onnx.data.cache import cache_path, default_cache_dir, load_dataset
from agmc_onnx.data.dataset import ImageDataset
from agmc_onnx.data.preprocessing import (
    PreprocessSpec,
    check_images_fit,
    labels_from_metadata,
    model_input_shape,
    model_metadata,
    spec_from_metadata,
    spec_from_model,
    to_model_input,
)
from agmc_onnx.data.splits import (
    DataSplits,
    SplitSources,
    balanced_order,
    load_split,
    load_splits,
    resolve_splits,
    sample_subset,
    split_train,
)

__all__ = [
    "ImageDataset",
    "PreprocessSpec",
    "DataSplits",
    "SplitSources",
    "load_dataset",
    "load_split",
    "load_splits",
    "resolve_splits",
    "split_train",
    "sample_subset",
    "balanced_order",
    "to_model_input",
    "check_images_fit",
    "spec_from_model",
    "spec_from_metadata",
    "labels_from_metadata",
    "model_metadata",
    "model_input_shape",
    "cache_path",
    "default_cache_dir",
]
