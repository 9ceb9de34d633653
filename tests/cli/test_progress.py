"""The one progress mechanism: library events rendered as a live bar on a terminal, periodic lines otherwise."""

from __future__ import annotations

import io

from agmc_onnx.cli.progress import ProgressRenderer
from agmc_onnx.evaluate import EvaluationProgress
from agmc_onnx.finetune import FinetuneProgress
from agmc_onnx.finetune.config import EpochRecord
from agmc_onnx.progress import StageEvent


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _epoch(renderer, epoch: int, batches: int = 100) -> None:
    for batch in range(1, batches + 1):
        renderer(FinetuneProgress(epoch, 2, batch, batches, 1.0 / batch))
    record = EpochRecord(epoch, 0.5, 0.8, 0.6, 0.75, 0.01, 3.0)
    renderer(FinetuneProgress(epoch, 2, batches, batches, 0.5, record))


def test_without_a_terminal_each_run_prints_about_ten_lines_and_every_lasting_one():
    stream = io.StringIO()
    with ProgressRenderer(stream) as renderer:
        _epoch(renderer, 1)
        _epoch(renderer, 2)
    lines = stream.getvalue().splitlines()
    # Per epoch: the first batch, each further tenth of the 100 batches, then the epoch's result.
    assert len(lines) == 2 * (1 + 10 + 1)
    assert lines[10].startswith("epoch 1/2 batch 100/100")
    assert lines[11].startswith("epoch 1/2: train loss 0.5000") and "val loss 0.6000 top-1 75.00 %" in lines[11]
    assert lines[12].startswith("epoch 2/2 batch 1/100")  # a new epoch starts a new run


def test_on_a_terminal_a_bar_shows_count_rate_and_the_latest_message():
    stream = _Terminal()
    with ProgressRenderer(stream, min_interval_s=0) as renderer:
        renderer(StageEvent("evaluate", "test accuracy"))
        for done in range(64, 257, 64):
            renderer(EvaluationProgress(done, 256))
    text = stream.getvalue()
    assert "test accuracy" in text and "256/256" in text and "image/s" in text
    assert "evaluated 256/256 images" in text


def test_stage_prefix_marks_announcements_and_lines():
    stream = io.StringIO()
    with ProgressRenderer(stream, stage_prefix=True) as renderer:
        renderer(StageEvent("data", "loading tiny.npz"))
        renderer(EvaluationProgress(8, 8))
    assert stream.getvalue().splitlines() == ["[data] loading tiny.npz", "[evaluate] evaluated 8/8 images"]
