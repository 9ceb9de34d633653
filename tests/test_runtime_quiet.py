"""onnxruntime's own log lines never reach the terminal in library use; its errors come back as exceptions."""

from __future__ import annotations

from onnx import TensorProto, helper

from agmc_onnx.graph.prepare import _shapes_by_running


def test_a_failing_probe_run_prints_nothing(capfd):
    nodes = [helper.make_node("Reshape", ["x", "target"], ["y"])]
    graph = helper.make_graph(
        nodes,
        "bad_reshape",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 4]),
            helper.make_tensor_value_info("target", TensorProto.INT64, [2]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert _shapes_by_running(model, 1, ["y"]) == {}  # a target of ones: onnxruntime fails inside the run
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == ""
