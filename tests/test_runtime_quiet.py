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


def test_analysing_a_model_whose_constant_folding_makes_onnxruntime_warn_prints_nothing(capfd):
    """Constant folding (onnx-graphsurgeon) runs onnxruntime sessions without options; an Unsqueeze of a
    constant that is an output of the folded subgraph makes onnxruntime's optimiser warn on its default
    logger ("UnsqueezeElimination cannot remove node")."""
    import numpy as np
    import onnxruntime as ort
    from tiny_models import TinyNet

    from agmc_onnx.analysis import analyze_model

    ort.set_default_logger_severity(2)  # onnxruntime's own default, as in a fresh process
    net = TinyNet("unsqueezed_constant", (3, 4, 4))
    bias = net.node("Unsqueeze", [net.const(np.ones((8, 1, 1), np.float32)), net.const(np.array([0]))])
    model = net.build(net.conv(net.node("Add", [net.conv("input", 3, 8), bias]), 8, 4))
    capfd.readouterr()
    assert analyze_model(model).prunable_groups
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == ""
