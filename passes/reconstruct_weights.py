"""``ReconstructWeightsPass``: re-fit the layers that lost input channels so they reproduce the original.

For every consumer of pruned channels, in topological order, a ridge least-squares problem chooses its
remaining input weights (and bias) so that, on sampled output positions of calibration images, its output
matches the original model's output at the same place (He et al., 2017, "Channel pruning"; ThiNet).
Original outputs come from onnxruntime; the pruned side runs once through the torch executor, and each
layer is re-fitted just before it runs, so its input already carries every upstream re-fit and errors do
not compound. Values change, wiring does not: the weights go back into the same initializers.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import torch

from agmc_onnx.cost.session import create_session
from agmc_onnx.errors import PostconditionError, PreconditionError
from agmc_onnx.passes.base import GraphPass, PassResult
from agmc_onnx.reconstruct.consumers import Consumer, LayerGeometry, layer_geometry, with_outputs
from agmc_onnx.reconstruct.solve import ridge_refit

__all__ = ["ReconstructWeightsPass", "RefitSettings", "images_needed"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RefitSettings:
    positions_per_image: int = 16  # sampled output positions per image and layer
    ridge: float = 1e-3  # relative to the mean diagonal of each Gram matrix
    seed: int = 0
    # a layer feeding a residual Add is fitted so that the pruned sum matches the original sum
    residual_sums: bool = True


@dataclass(frozen=True)
class _Target:
    output: torch.Tensor  # [M, C] the original layer's output at the sampled rows
    residual_sum: torch.Tensor | None  # [M, C] the original residual Add's output there, if any


@dataclass(frozen=True)
class _Samples:
    images: torch.Tensor  # [M] image index of each row
    places: torch.Tensor  # [M] flat output position of each row


class ReconstructWeightsPass(GraphPass):
    """Re-fit ``consumers`` of the graph so they match ``original`` on the calibration ``batches``."""

    def __init__(
        self,
        original: onnx.ModelProto,
        consumers: Sequence[Consumer],
        batches: Sequence[np.ndarray],
        settings: RefitSettings = RefitSettings(),
    ) -> None:
        self.original = original
        self.consumers = tuple(consumers)
        self.batches = tuple(batches)
        self.settings = settings

    @property
    def n_images(self) -> int:
        return sum(len(b) for b in self.batches)

    def requires(self, graph: gs.Graph) -> None:
        needed = images_needed(graph, self.consumers, self.settings)
        if self.n_images < needed:
            raise PreconditionError(
                f"reconstruction needs at least {needed} calibration images (the largest layer has more "
                f"unknown weights than {self.n_images} images give sampled positions); use more images"
            )

    def call(self, graph: gs.Graph) -> PassResult:
        nodes = {node.name: node for node in graph.nodes}
        geometries = {
            c.node: layer_geometry(c.op_type, nodes[c.node].attrs, c.input_shape) for c in self.consumers
        }
        todo = [c for c in self.consumers if geometries[c.node] is not None and _refittable(nodes[c.node], graph)]
        if not todo:
            return PassResult(graph, False, {"layers_refitted": 0, "layers_skipped": len(self.consumers)})
        samples = {c.node: self._samples(c, index) for index, c in enumerate(todo)}
        targets = self._original_outputs(todo, samples)
        refitted = self._refit(graph, todo, geometries, samples, targets)
        for name, (weight, bias) in refitted.items():
            node = nodes[name]
            node.inputs[1].values = weight
            if bias is not None:
                node.inputs[2].values = bias
        stats = {"layers_refitted": len(refitted), "layers_skipped": len(self.consumers) - len(refitted)}
        return PassResult(graph, bool(refitted), stats)

    def ensures(self, graph: gs.Graph) -> None:
        nodes = {node.name: node for node in graph.nodes}
        for consumer in self.consumers:
            for tensor in nodes[consumer.node].inputs[1:3]:
                if isinstance(tensor, gs.Constant) and not np.all(np.isfinite(tensor.values)):
                    raise PostconditionError(f"re-fitted weights '{tensor.name}' of '{consumer.node}' are not finite")

    def _samples(self, consumer: Consumer, index: int) -> _Samples:
        positions = LayerGeometry(consumer.op_type).positions(consumer.output_shape)
        per_image = _rows_per_image(consumer, self.settings)
        rng = np.random.default_rng([self.settings.seed, index])
        chosen = np.argsort(rng.random((self.n_images, positions)), axis=1)[:, :per_image]
        images = np.repeat(np.arange(self.n_images), per_image)
        return _Samples(torch.from_numpy(images), torch.from_numpy(chosen.reshape(-1)))

    def _original_outputs(self, todo: Sequence[Consumer], samples: Mapping[str, _Samples]) -> dict[str, _Target]:
        """The original layers' outputs at the sampled rows (kept output channels only), and the sums their
        residual Adds compute there, via onnxruntime."""
        sums = {c.node: c.residual.add_output for c in todo if c.residual is not None and self.settings.residual_sums}
        outputs = list(dict.fromkeys([c.output for c in todo] + list(sums.values())))
        session = create_session(with_outputs(self.original, outputs))
        input_name = session.get_inputs()[0].name
        parts: dict[str, list[torch.Tensor]] = {c.node: [] for c in todo}
        sum_parts: dict[str, list[torch.Tensor]] = {name: [] for name in sums}
        start = 0
        for batch in self.batches:
            values = dict(zip(outputs, session.run(outputs, {input_name: batch})))
            for consumer in todo:
                picked = _pick(values[consumer.output], consumer, samples[consumer.node], start, len(batch))
                parts[consumer.node].append(picked)
                if consumer.node in sums:
                    value = values[sums[consumer.node]]
                    sum_parts[consumer.node].append(_pick(value, consumer, samples[consumer.node], start, len(batch)))
            start += len(batch)
        return {
            name: _Target(torch.cat(chunks), torch.cat(sum_parts[name]) if name in sums else None)
            for name, chunks in parts.items()
        }

    def _refit(self, graph, todo, geometries, samples, targets) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
        """One torch forward of the pruned model over all images, re-fitting each layer before it runs."""
        from agmc_onnx.torch_exec import OnnxModule

        pruned = gs.export_onnx(graph.copy(), do_type_check=False)
        by_name = {c.node: c for c in todo}
        refitted: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}

        def before_node(name: str, args: list, values: Mapping[str, torch.Tensor]) -> list | None:
            consumer = by_name.get(name)
            if consumer is None:
                return None
            target = _layer_target(consumer, targets[name], samples[name], values)
            weight, bias = _refit_layer(geometries[name], args, samples[name], target, self.settings.ridge)
            refitted[name] = (weight.numpy(), None if bias is None else bias.numpy())
            return [args[0], weight, bias, *args[3:]] if len(args) > 2 else [args[0], weight]

        module = OnnxModule(pruned).eval()
        images = torch.from_numpy(np.concatenate(self.batches))
        with torch.no_grad():
            module.run([images], before_node=before_node)
        return refitted


def _rows_per_image(consumer: Consumer, settings: RefitSettings) -> int:
    positions = LayerGeometry(consumer.op_type).positions(consumer.output_shape)
    return max(1, min(settings.positions_per_image, positions))


def images_needed(graph: gs.Graph, consumers: Sequence[Consumer], settings: RefitSettings) -> int:
    """The fewest calibration images that give every layer at least as many rows as unknowns."""
    nodes = {node.name: node for node in graph.nodes}
    needed = 1
    for consumer in consumers:
        node = nodes.get(consumer.node)
        if node is None:
            raise PreconditionError(f"layer '{consumer.node}' to re-fit is not in the pruned graph")
        needed = max(needed, math.ceil(_unknowns(node) / _rows_per_image(consumer, settings)))
    return needed


def _refit_layer(geometry: LayerGeometry, args: list, samples: _Samples, target: torch.Tensor, ridge: float):
    x, weight = args[0], args[1]
    bias = args[2] if len(args) > 2 and args[2] is not None else None
    rows = geometry.rows(x, samples.images, samples.places)
    if geometry.op_type == "Conv":
        flat = weight.reshape(weight.shape[0], -1)
        new, new_bias = ridge_refit(rows, target, flat, bias, geometry.groups, ridge)
        return new.reshape(weight.shape), new_bias
    as_out_in = weight.T if geometry.weight_transposed else weight
    scaled_bias = None if bias is None else bias * geometry.beta
    new, new_bias = ridge_refit(rows, target, as_out_in * geometry.alpha, scaled_bias, 1, ridge)
    new = new / geometry.alpha
    new = new.T.contiguous() if geometry.weight_transposed else new
    return new, (None if new_bias is None else new_bias / geometry.beta)


def _layer_target(consumer: Consumer, target: _Target, samples: _Samples, values) -> torch.Tensor:
    """What the layer's output should be: its original output, or, for a layer feeding a residual Add,
    the original sum minus the pruned model's shortcut, taken back through the BatchNormalization between
    them (channels whose BN scale is ~0 keep their own target)."""
    residual = consumer.residual
    if target.residual_sum is None or residual is None or residual.shortcut not in values:
        return target.output
    shortcut = values[residual.shortcut]
    if shortcut.dim() != 4 or shortcut.shape[1] != target.output.shape[1]:
        return target.output
    picked = shortcut.reshape(shortcut.shape[0], shortcut.shape[1], -1)[samples.images, :, samples.places]
    wanted = target.residual_sum - picked.to(target.output.dtype)
    if residual.batchnorm is None:
        return wanted
    if not all(name in values for name in residual.batchnorm):
        return target.output
    scale, bias, mean, var = (values[name].to(wanted.dtype) for name in residual.batchnorm)
    slope = scale / torch.sqrt(var + residual.epsilon)
    usable = slope.abs() > 1e-6
    inverted = (wanted - (bias - slope * mean)) / torch.where(usable, slope, torch.ones_like(slope))
    return torch.where(usable, inverted, target.output)


def _pick(output: np.ndarray, consumer: Consumer, samples: _Samples, start: int, count: int) -> torch.Tensor:
    """Rows of ``output`` (a batch of images ``start..start+count``) that ``samples`` chose, kept channels."""
    value = torch.from_numpy(output)
    mask = (samples.images >= start) & (samples.images < start + count)
    images, places = samples.images[mask] - start, samples.places[mask]
    if consumer.op_type == "Conv":
        picked = value.reshape(value.shape[0], value.shape[1], -1)[images, :, places]  # [M, C]
    else:
        picked = value.reshape(value.shape[0], -1, value.shape[-1])[images, places]  # [M, C]
    return picked if consumer.keep_out is None else picked[:, list(consumer.keep_out)]


def _unknowns(node: gs.Node) -> int:
    """Unknowns per output of the layer's least-squares problem (weights it reads per output, + bias)."""
    weight = node.inputs[1]
    if not isinstance(weight, gs.Constant):
        return 0
    shape = weight.shape
    per_output = int(np.prod(shape[1:])) if node.op == "Conv" else int(shape[0] if node.op == "MatMul" else 0)
    if node.op == "Gemm":
        per_output = int(shape[1] if node.attrs.get("transB", 0) else shape[0])
    return per_output + (1 if len(node.inputs) > 2 else 0)


def _refittable(node: gs.Node, graph: gs.Graph) -> bool:
    """Constant weights (and bias) read by this node alone, a supported layout; others are left as pruned."""
    constants = [t for t in node.inputs[1:3]]
    if not constants or not all(isinstance(t, gs.Constant) for t in constants):
        log.info("not re-fitting '%s': its weights are not constants", node.name)
        return False
    readers = sum(1 for other in graph.nodes for t in other.inputs if t.name in {c.name for c in constants})
    if readers != len(constants):
        log.info("not re-fitting '%s': its weights are shared with another node", node.name)
        return False
    if node.op == "Gemm" and len(node.inputs) > 2:
        out = node.inputs[1].shape[0 if node.attrs.get("transB", 0) else 1]
        if tuple(node.inputs[2].shape) != (out,) or float(node.attrs.get("beta", 1.0)) == 0.0:
            log.info("not re-fitting '%s': its bias is not one value per output", node.name)
            return False
    return True
