"""Ridge least squares for a layer's kept input weights (and bias), per conv group, never NaN."""

from __future__ import annotations

import logging

import torch

__all__ = ["ridge_refit"]

log = logging.getLogger(__name__)

_EPS = 1e-8


def ridge_refit(
    rows: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    groups: int = 1,
    ridge: float = 1e-3,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Weights ``[O, K]`` (and bias ``[O]``) minimising ``‖rows·Wᵀ + b − target‖² + λ‖W − W₀‖²``.

    ``rows`` is ``[M, K]`` (channel-major, ``groups`` consecutive blocks), ``target`` ``[M, O]``; group g
    of the output reads only block g of the input. λ is ``ridge`` times the mean diagonal of each group's
    Gram matrix, so the prior (the current weights W₀, b₀) only decides directions the data does not
    determine: a singular system (a dead input, too little variety) leaves those weights as they were.
    """
    n_rows, n_in = rows.shape
    n_out = target.shape[1]
    k, o = n_in // groups, n_out // groups
    a = rows.to(torch.float64).reshape(n_rows, groups, k).permute(1, 0, 2)  # [G, M, k]
    y = target.to(torch.float64).reshape(n_rows, groups, o).permute(1, 0, 2)  # [G, M, o]
    prior = weight.to(torch.float64).reshape(groups, o, k).transpose(1, 2)  # [G, k, o]
    if bias is not None:
        a = torch.cat([a, torch.ones(groups, n_rows, 1, dtype=a.dtype)], dim=2)
        prior = torch.cat([prior, bias.to(torch.float64).reshape(groups, 1, o)], dim=1)
    gram = a.transpose(1, 2) @ a  # float64: a few hundred unknowns, cheap next to the forward pass
    size = gram.shape[-1]
    scale = torch.diagonal(gram, dim1=1, dim2=2).mean(dim=1).clamp_min(0.0)
    lam = (ridge * scale + _EPS).reshape(groups, 1, 1)
    eye = torch.eye(size, dtype=gram.dtype).expand_as(gram)
    solution = torch.linalg.solve(gram + lam * eye, a.transpose(1, 2) @ y + lam * prior)  # [G, size, o]
    if not torch.isfinite(solution).all():
        log.warning("least-squares re-fit gave non-finite weights; keeping the current ones")
        return weight, bias
    new_weight = solution[:, :k, :].transpose(1, 2).reshape(n_out, k).to(weight.dtype)
    new_bias = solution[:, k, :].reshape(n_out).to(bias.dtype) if bias is not None else None
    return new_weight, new_bias
