"""Models stored with external data: read, pruned and written as a pair; bad references refused."""

from __future__ import annotations

import errno
import os

import numpy as np
import onnx
import pytest
import tiny_models
from click.testing import CliRunner
from onnx import numpy_helper

from agmc_onnx.cli.main import cli
from agmc_onnx.errors import ModelLoadError
from agmc_onnx.io import EXTERNAL_DATA_KEY, load_model, save_model


def _external_model(folder, name: str = "model.onnx"):
    """residual_chain saved the way other tools write external data: weights in ``name.data``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    onnx.save(  # noqa: TID251 - the test writes external data the way other tools do
        tiny_models.residual_chain(),
        str(path),
        save_as_external_data=True,  # noqa: TID251
        all_tensors_to_one_file=True,
        location=f"{name}.data",
        size_threshold=1024,
    )
    return path


def _weights(model) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def _set_location(path, location: str) -> None:
    model = onnx.load(str(path), load_external_data=False)  # noqa: TID251
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    path.write_bytes(model.SerializeToString())


def test_loaded_external_model_is_written_back_as_a_pair(tmp_path):
    model = load_model(_external_model(tmp_path / "in"))
    out = save_model(model, tmp_path / "out" / "pruned.onnx")
    assert sorted(p.name for p in out.parent.iterdir()) == ["pruned.onnx", "pruned.onnx.data"]
    small = onnx.load(str(out), load_external_data=False)  # noqa: TID251
    for tensor in small.graph.initializer:  # float32 weights of 1 KB and more live in the data file
        external = tensor.data_location == onnx.TensorProto.EXTERNAL
        assert external == (4 * int(np.prod(tensor.dims)) >= 1024), tensor.name
    assert all(p.key != EXTERNAL_DATA_KEY for p in small.metadata_props)
    again = load_model(out)
    expected, found = _weights(model), _weights(again)
    assert expected.keys() == found.keys()
    assert all(np.array_equal(expected[k], found[k]) for k in expected)
    # told otherwise, the same model becomes one file without the marker
    single = save_model(model, tmp_path / "single" / "m.onnx", external_data=False)
    assert [p.name for p in single.parent.iterdir()] == ["m.onnx"]
    assert not onnx.load(str(single)).metadata_props  # noqa: TID251


def test_save_with_external_data_leaves_the_model_untouched(tmp_path):
    model = tiny_models.residual_chain()
    before = model.SerializeToString()
    save_model(model, tmp_path / "m.onnx", external_data=True)
    assert model.SerializeToString() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.onnx.data"]


def test_prune_cli_keeps_external_data(tmp_path):
    source = _external_model(tmp_path / "in")
    data_before = (tmp_path / "in" / "model.onnx.data").read_bytes()
    out = tmp_path / "out" / "pruned.onnx"
    result = CliRunner().invoke(cli, ["prune", str(source), "--keep", "0.5", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.parent.iterdir()) == ["pruned.onnx", "pruned.onnx.data"]
    assert (tmp_path / "in" / "model.onnx.data").read_bytes() == data_before
    assert load_model(out).graph.initializer[0].dims[0] == 4  # the first conv kept 4 of its 8 channels


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("missing", "external data file missing: model.onnx.data"),
        ("truncated", "is truncated"),
        ("traversal", "points outside the model's folder"),
        ("absolute", "points outside the model's folder"),
        ("symlink", "points outside the model's folder"),
    ],
)
def test_bad_external_data_is_one_clear_error_and_nothing_is_written(tmp_path, damage, message):
    source = _external_model(tmp_path / "in")
    data = tmp_path / "in" / "model.onnx.data"
    outside = tmp_path / "outside.bin"
    outside.write_bytes(data.read_bytes())
    if damage == "missing":
        data.unlink()
    elif damage == "truncated":
        data.write_bytes(data.read_bytes()[:-100])
    elif damage == "traversal":
        _set_location(source, "../outside.bin")
    elif damage == "absolute":
        _set_location(source, str(outside))
    elif damage == "symlink":
        data.unlink()
        data.symlink_to(outside)
    with pytest.raises(ModelLoadError, match=message):
        load_model(source)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["prune", str(source), "--keep", "0.5", "-o", str(out / "p.onnx")])
    assert result.exit_code == 1
    assert message.split(":")[0] in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not out.exists()


class _FullDisk:
    """A file whose disk fills after ``limit`` bytes: writes beyond it fail with ENOSPC."""

    def __init__(self, handle, limit: int) -> None:
        self.handle, self.limit, self.written = handle, limit, 0

    def write(self, payload) -> int:
        if self.written + len(payload) > self.limit:
            self.handle.write(payload[: self.limit - self.written])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.written += len(payload)
        return self.handle.write(payload)

    def __getattr__(self, name):
        return getattr(self.handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.handle.close()


@pytest.mark.parametrize("external", [False, True])
def test_full_disk_leaves_no_partial_output(tmp_path, monkeypatch, external):
    model = tiny_models.residual_chain()
    out = tmp_path / "out"
    out.mkdir()
    previous = save_model(tiny_models.conv_bn_relu(), out / "m.onnx", external_data=external)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real_fdopen = os.fdopen
    monkeypatch.setattr(os, "fdopen", lambda *a, **k: _FullDisk(real_fdopen(*a, **k), limit=1024))
    with pytest.raises(OSError) as raised:
        save_model(model, previous, external_data=external)
    monkeypatch.undo()
    assert raised.value.errno == errno.ENOSPC
    after = {p.name: p.read_bytes() for p in out.iterdir()}
    assert after == before  # no temporary left behind, and the earlier output is intact
