"""The oracle rejects validly shaped pruned models whose wiring is wrong, one channel-rule family each.

Each test prunes a small network validly (the oracle passes), then corrupts one edit of the written
model the way a rule bug would (a permuted, substituted or shifted kept-position set, a shifted slice
bound), keeping every shape valid so that only the oracle can notice, and expects the oracle to name
the output that changed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import pytest
import tiny_models

from agmc_onnx.analysis import ModelAnalysis, analyze_model
from agmc_onnx.errors import ValidationError
from agmc_onnx.groups.flow import RewriteAttribute, SliceConstant
from agmc_onnx.plan import ChannelSelection, uniform_plan
from agmc_onnx.prune import prune_model
from agmc_onnx.validate import check_written_model, validate_pruned


@dataclass
class Pruned:
    """A validly pruned model and what it takes to corrupt one of its edits."""

    model: onnx.ModelProto
    analysis: ModelAnalysis
    selection: ChannelSelection
    written: onnx.ModelProto
    kept: dict[str, np.ndarray]

    @classmethod
    def at_half(cls, model: onnx.ModelProto, selection: ChannelSelection | None = None) -> Pruned:
        analysis = analyze_model(model)
        result = prune_model(model, selection or uniform_plan(analysis.groups, 0.5), analysis=analysis)
        assert validate_pruned(model, analysis, result.selection, result.model).passed
        kept = analysis.kept_positions(result.selection.dropped_roots(analysis.groups))
        return cls(model, analysis, result.selection, result.model, kept)

    def op(self, node: str) -> str:
        return next(n.op_type for n in self.analysis.model.graph.node if n.name == node)

    def slice_edit(self, op: str, consumes: bool, index: int = 0, input_index: int = 1) -> SliceConstant:
        edits = [
            e
            for e in self.analysis.flow.edits
            if isinstance(e, SliceConstant)
            and e.consumes == consumes
            and e.input_index == input_index
            and e.tensor in self.kept
            and self.op(e.node) == op
        ]
        return edits[index]

    def positions(self, edit: SliceConstant) -> np.ndarray:
        return self.kept[edit.tensor].copy()

    def dropped(self, edit: SliceConstant) -> np.ndarray:
        length = len(self.analysis.flow.tensors[edit.tensor])
        return np.setdiff1d(np.arange(length), self.kept[edit.tensor])

    def reslice(self, edit: SliceConstant, positions: np.ndarray) -> onnx.ModelProto:
        """The written model with ``edit`` redone from the original constant at ``positions``.

        The constant's other edits (a conv's input columns when ``edit`` slices its filters) are
        redone as the pruning did, so only this edit is wrong.
        """
        assert len(positions) == len(self.kept[edit.tensor]) and not np.array_equal(
            positions, self.kept[edit.tensor]
        )
        original = {n.name: n for n in gs.import_onnx(self.analysis.model).nodes}[edit.node]
        values = np.asarray(original.inputs[edit.input_index].values)
        for other in self.analysis.flow.edits:
            if (
                isinstance(other, SliceConstant)
                and (other.node, other.input_index) == (edit.node, edit.input_index)
                and other.tensor in self.kept
            ):
                take = positions if other == edit else self.kept[other.tensor]
                values = np.take(values, take, axis=other.axis)
        return self._replace(edit.node, edit.input_index, values)

    def _replace(self, node_name: str, input_index: int, values: np.ndarray) -> onnx.ModelProto:
        graph = gs.import_onnx(self.written)
        node = {n.name: n for n in graph.nodes}[node_name]
        node.inputs[input_index] = gs.Constant(f"{node_name}__corrupted_{input_index}", values)
        corrupted = gs.export_onnx(graph, do_type_check=False)
        del corrupted.opset_import[:]
        corrupted.opset_import.extend(self.written.opset_import)
        corrupted.ir_version = self.written.ir_version
        return corrupted

    def assert_rejected(self, corrupted: onnx.ModelProto, output: str | None = None) -> None:
        check_written_model(self.model, corrupted)  # shapes stay valid: only the oracle can tell
        with pytest.raises(ValidationError, match="differs from the masked original") as caught:
            validate_pruned(self.model, self.analysis, self.selection, corrupted)
        expected = output or self.model.graph.output[0].name
        assert caught.value.output_name == expected and f"'{expected}'" in str(caught.value)


def _swap_first_two(positions: np.ndarray) -> np.ndarray:
    swapped = positions.copy()
    swapped[[0, 1]] = swapped[[1, 0]]
    return swapped


def two_headed() -> onnx.ModelProto:
    """One prunable feature map read by two convs that are graph outputs of their own."""
    net = tiny_models.TinyNet("two_headed")
    x = net.node("Relu", [net.conv("input", 3, 8)])
    return net.build(net.conv(x, 8, 4), net.conv(x, 8, 2))


def transposed_matmul() -> onnx.ModelProto:
    """A conv feature map read channels-last by a MatMul after a Transpose."""
    net = tiny_models.TinyNet("transposed_matmul")
    x = net.node("Transpose", [net.node("Relu", [net.conv("input", 3, 8)])], perm=[0, 2, 3, 1])
    return net.build(net.node("MatMul", [x, net.weight(8, 6)]))


def test_conv_to_conv_permuted_consumer_columns():
    case = Pruned.at_half(tiny_models.conv_bn_relu())
    edit = case.slice_edit("Conv", consumes=True)
    case.assert_rejected(case.reslice(edit, _swap_first_two(case.positions(edit))))


def test_conv_to_conv_names_the_one_output_that_changed():
    case = Pruned.at_half(two_headed())
    edit = case.slice_edit("Conv", consumes=True, index=1)  # the second head
    case.assert_rejected(case.reslice(edit, _swap_first_two(case.positions(edit))), case.model.graph.output[1].name)


def test_residual_add_producers_keeping_different_channels():
    case = Pruned.at_half(tiny_models.residual_chain(depth=2))
    stream = max(case.analysis.groups, key=lambda g: len(g.producers))
    last_producer = stream.producers[-1]
    edit = next(
        e for e in case.analysis.flow.edits
        if isinstance(e, SliceConstant) and e.node == last_producer and not e.consumes and e.input_index == 1
    )  # fmt: skip
    positions = case.positions(edit)
    positions[-1] = case.dropped(edit)[0]
    case.assert_rejected(case.reslice(edit, np.sort(positions)))


def test_residual_mul_gate_rows_permuted():
    case = Pruned.at_half(tiny_models.squeeze_excitation())
    gate = case.slice_edit("Conv", consumes=False, index=2)  # the conv whose sigmoid gates the features
    case.assert_rejected(case.reslice(gate, _swap_first_two(case.positions(gate))))


def test_concat_with_a_shifted_offset():
    case = Pruned.at_half(tiny_models.concat_different_sources())
    edit = case.slice_edit("Conv", consumes=True)  # the conv reading the concatenation
    first = case.analysis.group("g0").n_units  # channels of the first concatenated source
    positions = case.positions(edit)
    positions[positions >= first] -= 1  # the second source read one channel too early
    case.assert_rejected(case.reslice(edit, positions))


def test_split_with_a_channel_across_the_boundary():
    case = Pruned.at_half(tiny_models.split_branches())
    edit = case.slice_edit("Conv", consumes=False, index=0)  # the conv that is split
    positions, half = case.positions(edit), len(case.analysis.flow.tensors[edit.tensor]) // 2
    dropped_second = case.dropped(edit)[case.dropped(edit) >= half]
    positions[np.flatnonzero(positions < half)[-1]] = dropped_second[0]
    case.assert_rejected(case.reslice(edit, np.sort(positions)))


def test_slice_with_shifted_bounds():
    # Keep channels on both sides of the slice [2, 6) so that its rewritten bounds can move: drop positions 1
    # and 6 (the slice's first channel, position 2, is kept whole and is no unit: units are 0, 1, 3, ..., 7).
    case = Pruned.at_half(tiny_models.channel_slice(), ChannelSelection({"g0": (0, 2, 3, 4, 6)}))
    edit = next(e for e in case.analysis.flow.edits if isinstance(e, RewriteAttribute) and e.kind == "slice")
    graph = gs.import_onnx(case.written)
    node = {n.name: n for n in graph.nodes}[edit.node]
    start, stop = int(node.inputs[1].values.ravel()[0]), int(node.inputs[2].values.ravel()[0])
    shift = 1 if stop < len(case.kept[edit.tensors[0]]) else -1
    assert 0 <= start + shift and stop + shift <= len(case.kept[edit.tensors[0]])
    corrupted = case._replace(edit.node, 1, np.array([start + shift], np.int64))
    case.written, written = corrupted, case.written
    try:
        corrupted = case._replace(edit.node, 2, np.array([stop + shift], np.int64))
    finally:
        case.written = written
    case.assert_rejected(corrupted)


def test_depthwise_kernels_applied_to_the_wrong_channels():
    case = Pruned.at_half(tiny_models.depthwise_after_producer())
    edit = case.slice_edit("Conv", consumes=False, index=1)  # the depthwise conv's own kernels
    case.assert_rejected(case.reslice(edit, _swap_first_two(case.positions(edit))))


def test_grouped_conv_group_from_a_dropped_unit():
    case = Pruned.at_half(tiny_models.grouped_conv())
    edit = case.slice_edit("Conv", consumes=False, index=1)  # the grouped conv's filters
    positions, dropped = case.positions(edit), case.dropped(edit)
    width = 4
    positions[-width:] = dropped[:width]  # a whole conv group's filters from a removed group
    case.assert_rejected(case.reslice(edit, np.sort(positions)))


@pytest.mark.parametrize("build,block", [(tiny_models.flatten_gemm, 16), (tiny_models.reshape_gemm, 4)])
def test_flatten_and_reshape_into_gemm_with_a_wrong_block(build, block):
    case = Pruned.at_half(build())
    edit = case.slice_edit("Gemm", consumes=True)
    positions, dropped = case.positions(edit), case.dropped(edit)
    positions[-block:] = dropped[-block:]  # one channel's spatial block taken from a removed channel
    case.assert_rejected(case.reslice(edit, np.sort(positions)))


def test_transpose_into_matmul_with_permuted_rows():
    case = Pruned.at_half(transposed_matmul())
    edit = case.slice_edit("MatMul", consumes=True)
    case.assert_rejected(case.reslice(edit, _swap_first_two(case.positions(edit))))
