"""Least-squares reconstruction of pruned layers: ``agmc_onnx.reconstruct.run.reconstruct_pruned``."""
