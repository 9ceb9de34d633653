"""Old ONNX files: opset upgrade on load, and the IR-version rule that initializers are graph inputs.

Opsets 7–10 are converted with ``onnx.version_converter`` to ``CONVERTED_OPSET`` when the model is
loaded; the opset it came with is recorded in the model's metadata (``CONVERTED_FROM_KEY``) so that
``inspect`` and reports can say so, and written models carry the note on. IR versions below 4 require
every initializer to be listed as a graph input; ``list_initializers_as_inputs`` restores that after a
rewrite (graph exporters list only real inputs).
"""

from __future__ import annotations

import logging

import onnx
import onnx.version_converter

from agmc_onnx.errors import ModelLoadError

__all__ = [
    "OLDEST_OPSET",
    "CONVERTED_OPSET",
    "CONVERTED_FROM_KEY",
    "default_opset",
    "upgrade_opset",
    "converted_from_opset",
    "list_initializers_as_inputs",
]

log = logging.getLogger(__name__)

OLDEST_OPSET = 7  # the converter's adapters start here
CONVERTED_OPSET = 14  # BatchNormalization's training_mode (statistics re-estimation) needs 14
CONVERTED_FROM_KEY = "agmc_onnx.converted_from_opset"


def default_opset(model: onnx.ModelProto) -> int:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return 0


def upgrade_opset(model: onnx.ModelProto, minimum: int, source: str = "model") -> onnx.ModelProto:
    """``model`` itself when its opset is at least ``minimum``, else a copy converted to ``CONVERTED_OPSET``."""
    opset = default_opset(model)
    if opset >= minimum:
        return model
    if opset < OLDEST_OPSET:
        raise ModelLoadError(
            f"{source} uses opset {opset}; opsets from {OLDEST_OPSET} on are supported (older ones cannot "
            "be converted automatically)"
        )
    try:
        converted = onnx.version_converter.convert_version(model, CONVERTED_OPSET)
    except Exception as exc:  # the converter raises RuntimeError, ValidationError or its adapters' own errors
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(
            f"{source} uses opset {opset} and could not be converted to opset {CONVERTED_OPSET}: {first_line}"
        ) from None
    converted.ir_version = model.ir_version
    entry = converted.metadata_props.add()
    entry.key, entry.value = CONVERTED_FROM_KEY, str(opset)
    log.info("%s: converted from opset %d to opset %d", source, opset, CONVERTED_OPSET)
    return converted


def converted_from_opset(model: onnx.ModelProto) -> int | None:
    """The opset the file had before it was converted on load, or None when it was not converted."""
    for entry in model.metadata_props:
        if entry.key == CONVERTED_FROM_KEY:
            return int(entry.value)
    return None


def list_initializers_as_inputs(model: onnx.ModelProto) -> onnx.ModelProto:
    """Below IR version 4 every initializer must also be a graph input: ``model`` itself when nothing is
    missing, else a copy with the missing inputs added."""
    if model.ir_version >= 4:
        return model
    listed = {value.name for value in model.graph.input}
    missing = [init for init in model.graph.initializer if init.name not in listed]
    if not missing:
        return model
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    for init in missing:
        fixed.graph.input.append(onnx.helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
    return fixed
