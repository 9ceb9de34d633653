"""A tiny text classifier trained in the repository: int64 token ids in, 4 topic scores out.

The task is synthetic, so nothing is downloaded: a sequence of ``TEXT_LENGTH`` ids from a vocabulary of
``TEXT_VOCAB`` belongs to topic c when about half of its tokens come from topic c's quarter of the
vocabulary (the rest uniform). The model is the corpus's tiny BERT (2 layers, width 64, 4 heads, a head on
the first token) trained with Adam for a fixed number of steps, exported with token ids and an attention
mask as inputs. It exists to compress a text-token model label-free (``benchmarks/label_free.py``).

    python -m agmc_onnx.models.text_topics --steps 300 -o text_topics.onnx
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from agmc_onnx.models.corpus import export_text
from agmc_onnx.models.corpus_builders import TEXT_LENGTH, TEXT_VOCAB, text_encoder

__all__ = ["topic_sequences", "train_text_topics", "main", "N_TOPICS"]

N_TOPICS = 4


def topic_sequences(n: int, seed: int = 0, topic_share: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """(int64 ids N×TEXT_LENGTH, topics N): each token is from its topic's vocabulary quarter with
    probability ``topic_share``, else uniform over the whole vocabulary."""
    rng = np.random.default_rng(seed)
    topics = rng.integers(0, N_TOPICS, n)
    width = TEXT_VOCAB // N_TOPICS
    on_topic = topics[:, None] * width + rng.integers(0, width, (n, TEXT_LENGTH))
    uniform = rng.integers(0, TEXT_VOCAB, (n, TEXT_LENGTH))
    ids = np.where(rng.random((n, TEXT_LENGTH)) < topic_share, on_topic, uniform)
    return ids.astype(np.int64), topics


def train_text_topics(steps: int, *, batch_size: int = 64, seed: int = 0) -> tuple[nn.Module, dict]:
    """Adam on cross-entropy over freshly drawn batches, ``steps`` of them."""
    torch.manual_seed(seed)
    model = text_encoder("bert")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    started, cpu = time.perf_counter(), time.process_time()
    model.train()
    for step in range(steps):
        ids, topics = topic_sequences(batch_size, seed=1000 + step)
        logits = model(torch.from_numpy(ids), torch.ones(ids.shape, dtype=torch.int64))
        loss = nn.functional.cross_entropy(logits, torch.from_numpy(topics))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    log = {"steps": steps, "batch_size": batch_size, "final_batch_loss": loss.item()}
    return model.eval(), log | {"wall_s": time.perf_counter() - started, "cpu_s": time.process_time() - cpu}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    model, log = train_text_topics(args.steps)
    ids, topics = topic_sequences(1000, seed=1)
    with torch.no_grad():
        predicted = model(torch.from_numpy(ids), torch.ones(ids.shape, dtype=torch.int64)).argmax(1).numpy()
    info = {
        "model": "text_topics",
        "task": f"synthetic task: {N_TOPICS} topics, each a quarter of a {TEXT_VOCAB}-token vocabulary, "
        "half the tokens on topic",
        **log,
        "test_top1": float((predicted == topics).mean()),
        "test_sequences": len(topics),
    }
    export_text(model, args.output, 17)
    args.output.with_suffix(".json").write_text(json.dumps(info, indent=1) + "\n")
    print(json.dumps(info, indent=1))


if __name__ == "__main__":
    main()
