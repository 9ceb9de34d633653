"""State encoders: what the agent sees for channel group t.

Both return ``cat(static part of group t, dynamic features)``; the dynamic features (MACs reduced so
far, MACs still removable, previous action) come from the environment at each step.

- ``GraphState`` (AGMC): static part = mean of the GNN embeddings of the group's nodes, and the graph
  embedding. It has parameters and is trained (auto-encoder pre-training, then the critic loss plus the
  reconstruction loss during the search).
- ``RuleState`` (AMC): static part = the 7 min-max normalised layer features; no parameters.
"""

from __future__ import annotations

import torch
from torch import nn
from torch_geometric.data import Data

from agmc_onnx.search.encoder import (
    EncoderConfig,
    GraphDecoder,
    GraphEncoder,
    pretrain_encoder,
    reconstruction_loss,
)
from agmc_onnx.search.features import GraphFeatures

__all__ = ["GraphState", "RuleState", "N_DYNAMIC"]

N_DYNAMIC = 3


class GraphState(nn.Module):
    """Shapes: forward(group_index [B], dynamic [B, 3]) -> [B, 2·embed_dim + 3]."""

    def __init__(self, features: GraphFeatures, config: EncoderConfig = EncoderConfig()) -> None:
        super().__init__()
        data = features.data
        self.config = config
        self.data = data
        self.encoder = GraphEncoder(data.x.shape[1], data.edge_attr.shape[1], config)
        self.decoder = GraphDecoder(config.embed_dim, data.x.shape[1], config.hidden_dim)
        pool = torch.zeros(len(features.group_nodes), data.x.shape[0])
        for row, nodes in enumerate(features.group_nodes):
            pool[row, list(nodes)] = 1.0 / len(nodes)
        self.register_buffer("pool", pool)
        self.state_dim = 2 * config.embed_dim + N_DYNAMIC

    @property
    def trainable(self) -> bool:
        return True

    def static_table(self) -> torch.Tensor:
        return self.static_table_of(self.static_inputs())

    def static_inputs(self) -> dict[str, torch.Tensor]:
        """What the static states are computed from: this network's graph and its group pooling."""
        return {"x": self.data.x, "edge_index": self.data.edge_index, "edge_attr": self.data.edge_attr,
                "pool": self.pool}

    def static_table_of(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Per-group static states of any network's ``static_inputs``, under this encoder's weights."""
        data = Data(x=inputs["x"], edge_index=inputs["edge_index"], edge_attr=inputs["edge_attr"])
        nodes, graph = self.encoder(data)
        group_embeddings = inputs["pool"] @ nodes
        return torch.cat([group_embeddings, graph.expand(group_embeddings.shape[0], -1)], dim=1)

    def forward(self, group_index: torch.Tensor, dynamic: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.static_table()[group_index], dynamic], dim=1)

    def auxiliary_loss(self, generator: torch.Generator) -> torch.Tensor:
        return reconstruction_loss(
            self.encoder, self.decoder, self.data, generator, self.config.negatives_per_edge
        )

    def pretrain(self, seed: int) -> list[float]:
        return pretrain_encoder(self.encoder, self.decoder, self.data, self.config, seed)

    def transferable_state(self) -> dict:
        """The GNN's weights without this network's graph (``pool`` is sized by its groups and nodes)."""
        return {"encoder": self.encoder.state_dict(), "decoder": self.decoder.state_dict()}

    def load_transferable_state(self, state: dict) -> None:
        self.encoder.load_state_dict(state["encoder"])
        self.decoder.load_state_dict(state["decoder"])


class RuleState(nn.Module):
    """Shapes: forward(group_index [B], dynamic [B, 3]) -> [B, 7 + 3]."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("table", torch.as_tensor(table, dtype=torch.float32))
        self.state_dim = self.table.shape[1] + N_DYNAMIC

    @property
    def trainable(self) -> bool:
        return False

    def static_table(self) -> torch.Tensor:
        return self.table

    def static_inputs(self) -> dict[str, torch.Tensor]:
        return {"table": self.table}

    def static_table_of(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return inputs["table"]

    def forward(self, group_index: torch.Tensor, dynamic: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.table[group_index], dynamic], dim=1)

    def auxiliary_loss(self, generator: torch.Generator) -> torch.Tensor:
        return torch.zeros(())

    def pretrain(self, seed: int) -> list[float]:
        return []

    def transferable_state(self) -> dict:
        return {}  # the rule table is this network's own; nothing is learned

    def load_transferable_state(self, state: dict) -> None:
        return None
