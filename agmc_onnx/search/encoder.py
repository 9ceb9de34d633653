"""GNN encoder-decoder over the layer graph, trained as a graph auto-encoder.

The encoder (GINE message passing with edge features) gives node embeddings and a graph embedding.
The decoder reconstructs both the edges (inner product of node embeddings, against sampled non-edges)
and every node's input features (MLP). ``pretrain_encoder`` fits it before the search; the search keeps
training it end-to-end through the critic loss plus this reconstruction loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.data import Data
from torch_geometric.nn import GINEConv, global_max_pool, global_mean_pool

__all__ = ["EncoderConfig", "GraphEncoder", "GraphDecoder", "reconstruction_loss", "pretrain_encoder"]


@dataclass(frozen=True)
class EncoderConfig:
    hidden_dim: int = 64
    embed_dim: int = 32
    n_layers: int = 3
    pretrain_epochs: int = 300
    pretrain_lr: float = 5e-3
    negatives_per_edge: int = 1


def _mlp(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, out_dim))


class GraphEncoder(nn.Module):
    """Node features -> node embeddings [n_nodes, embed_dim] and graph embedding [embed_dim].

    Shapes: x [N, F], edge_index [2, E], edge_attr [E, 2].
    """

    def __init__(self, in_dim: int, edge_dim: int, config: EncoderConfig = EncoderConfig()) -> None:
        super().__init__()
        self.config = config
        dims = [in_dim] + [config.hidden_dim] * (config.n_layers - 1) + [config.embed_dim]
        self.convs = nn.ModuleList(
            GINEConv(_mlp(d_in, config.hidden_dim, d_out), edge_dim=edge_dim, train_eps=True)
            for d_in, d_out in zip(dims[:-1], dims[1:])
        )
        self.readout = nn.Linear(2 * config.embed_dim, config.embed_dim)

    def forward(self, data: Data) -> tuple[torch.Tensor, torch.Tensor]:
        h = data.x
        for position, conv in enumerate(self.convs):
            h = conv(h, data.edge_index, data.edge_attr)
            if position < len(self.convs) - 1:
                h = F.relu(h)
        batch = torch.zeros(h.shape[0], dtype=torch.long)
        pooled = torch.cat([global_mean_pool(h, batch), global_max_pool(h, batch)], dim=1)
        return h, torch.tanh(self.readout(pooled))[0]


class GraphDecoder(nn.Module):
    """Reconstructs node features from node embeddings; edges are scored by inner products."""

    def __init__(self, embed_dim: int, out_dim: int, hidden_dim: int = 64) -> None:
        super().__init__()
        self.features = _mlp(embed_dim, hidden_dim, out_dim)

    def forward(self, node_embeddings: torch.Tensor) -> torch.Tensor:
        return self.features(node_embeddings)


def reconstruction_loss(
    encoder: GraphEncoder, decoder: GraphDecoder, data: Data, generator: torch.Generator, negatives: int = 1
) -> torch.Tensor:
    """Edge BCE (true edges vs seeded random pairs) + node-feature MSE."""
    nodes, _ = encoder(data)
    src, dst = data.edge_index
    n_nodes = nodes.shape[0]
    n_negative = src.numel() * negatives
    neg_src = torch.randint(n_nodes, (n_negative,), generator=generator)
    neg_dst = torch.randint(n_nodes, (n_negative,), generator=generator)
    positive = (nodes[src] * nodes[dst]).sum(dim=1)
    negative = (nodes[neg_src] * nodes[neg_dst]).sum(dim=1)
    logits = torch.cat([positive, negative])
    labels = torch.cat([torch.ones_like(positive), torch.zeros_like(negative)])
    edge_loss = F.binary_cross_entropy_with_logits(logits, labels)
    feature_loss = F.mse_loss(decoder(nodes), data.x)
    return edge_loss + feature_loss


def pretrain_encoder(
    encoder: GraphEncoder, decoder: GraphDecoder, data: Data, config: EncoderConfig, seed: int = 0
) -> list[float]:
    """Fit encoder and decoder as a graph auto-encoder; returns the loss of every epoch."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=config.pretrain_lr)
    history = []
    for _ in range(config.pretrain_epochs):
        optimizer.zero_grad()
        loss = reconstruction_loss(encoder, decoder, data, generator, config.negatives_per_edge)
        loss.backward()
        optimizer.step()
        history.append(float(loss.detach()))
    return history
