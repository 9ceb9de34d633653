"""The Markdown report of ``benchmarks/accuracy.py``'s results (one JSON store of rows by key)."""

from __future__ import annotations

import os
import platform

import torch
from measure_zoo import machine  # benchmarks/ is on sys.path when run as a script


def render(rows: dict, test_images: int, conditions: str) -> str:
    lines = [
        "# Accuracy at 50 % MACs without fine-tuning: importance × BN re-estimation vs reconstruction",
        "",
        "Command: `python benchmarks/accuracy.py grid|sweep|reward|screen|finetune` (options in each section; see the "
        f"script's docstring). Machine: {machine()['cpu_model']}, {os.cpu_count()} cores; {conditions} "
        f"Python {platform.python_version()}, torch {torch.__version__}. Wall times are indicative only (shared "
        "machine, not a timing run).",
        "",
        "Protocol: shared CIFAR-10 models; 50 % MACs. *uniform*: the largest single keep ratio within the budget, "
        "channel counts rounded to multiples of 8 (*uniform-rN*: of N); *searched*: the agmc policy committed in "
        "`benchmarks/results/compress/<model>/report.json` (searched with a BN-re-estimation reward, rounded to 8); "
        "*searched-…*: a policy found by the `reward` phase below. "
        "Calibration: class-balanced training images (256 for BN re-estimation; reconstruction in the grid, "
        "reward, screen and fine-tuning rows uses the defaults of when they ran: 256 images or twice the images its "
        "largest layer needs, only the layers that lost input channels (the default is now 1,024 images and every "
        "later layer too, after the sweep below); 16 sampled positions per image and layer, each layer fitted to "
        "the original's output, a layer feeding a residual Add to the original sum minus the pruned shortcut; its "
        "BN statistics stay the original's unless the column says + BN). "
        "taylor: gradients of the cross-entropy on 128 training images. "
        f"Accuracy: top-1 on a seeded class-balanced {test_images:,}-image subset of the test set (JPEG copy) "
        "unless a table says otherwise.",
        "",
    ]
    lines += ["## No fine-tuning", ""] + _grid_table(rows, current=True)
    originals = ", ".join(f"{k.split('/')[0]} {v['test_top1']:.2%}" for k, v in rows.items() if k.endswith("/original"))
    lines += ["", f"Unpruned, same test subset: {originals}.", ""]
    key = "top1_reconstructed_full_test"
    full = [f"{k} {v[key]:.2%}" for k, v in rows.items() if key in v and "top1_bn_only" in v]  # grid rows
    if full:
        lines += [f"Reconstruction scored on the full 10,000-image test set too: {', '.join(full)}.", ""]
    lines += _sweep_table(rows) + _reward_table(rows) + _screen_table(rows) + _finetune_table(rows)
    lines += ["## Before residual-sum targets (every layer fitted to its own original output)", ""]
    lines += _grid_table(rows, current=False)
    return "\n".join(lines) + "\n"


def _table(columns: list[str], cells: list[list[str]]) -> list[str]:
    """A Markdown table; the separator row follows from the columns."""
    return ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)] + [
        "| " + " | ".join(row) + " |" for row in cells
    ]


def _grid_table(rows: dict, current: bool) -> list[str]:
    cells = []
    for key, row in rows.items():
        parts = key.split("/")
        if len(parts) != 3 or "top1_bn_only" not in row or key.endswith("@own-targets") == current:
            continue
        name, plan, importance = parts
        cells.append([
            name, plan, importance.removesuffix("@own-targets"), f"{row['macs_fraction']:.1%}",
            f"{row['top1_bn_only']:.2%}", f"**{row['top1_reconstructed']:.2%}**", f"{row['top1_reconstructed_bn']:.2%}",
            f"{row['select_and_prune_s']:.1f}", f"{row['bn_only_s']:.1f}",
            f"{row['reconstruct_s']:.1f} ({row['reconstruct_images']})",
        ])
    columns = ["model", "plan", "importance", "MACs", "BN only", "reconstruction", "reconstruction + BN",
               "select+prune s", "BN s", "reconstruct s (images)"]
    return _table(columns, cells)


def _sweep_table(rows: dict) -> list[str]:
    cells = []
    for key, row in rows.items():
        name, phase, label = (key.split("/", 2) + ["", ""])[:3]
        if phase != "sweep" and not phase.startswith("sweep@"):
            continue
        full = row.get("top1_reconstructed_full_test")
        cells.append([
            name, phase.partition("@")[2] or "searched", row["importance"], label, f"{row['macs_fraction']:.1%}",
            f"**{row['top1_reconstructed']:.2%}**", f"{row['top1_reconstructed_bn']:.2%}",
            "" if full is None else f"**{full:.2%}**", str(row["layers_refitted"]),
            f"{row['reconstruct_s']:.1f} ({row['reconstruct_images']})",
        ])
    if not cells:
        return []
    columns = ["model", "plan", "importance", "settings", "MACs", "reconstruction", "reconstruction + BN",
               "reconstruction, full test set", "layers", "reconstruct s (images)"]
    return ["## Reconstruction settings (`sweep --sweep-plan`)", ""] + _table(columns, cells) + [""]


def _reward_table(rows: dict) -> list[str]:
    cells = [
        [
            key.split("/")[0], row["reward"], row.get("budget_mode", "wall"), str(row.get("seed", 0)),
            str(row["round_to"]), str(row["episodes"]),
            f"{row['search_s']:.0f}",
            f"{row['search_s'] / row['episodes']:.1f}", f"{row['best_reward']:.2%}", f"{row['macs_fraction']:.1%}",
            f"**{row['top1_reconstructed']:.2%}**",
        ]
        for key, row in rows.items() if "/reward/" in key
    ]
    if not cells:
        return []
    columns = ["model", "reward", "budget mode", "seed", "round to", "episodes", "search s", "s / episode",
               "best reward", "MACs",
               "test top-1 after reconstruction"]
    return [
        "## Search reward (`reward`): BN re-estimation vs reconstruction", "",
        "Each search: agmc policy, 1,000 held-out training images as reward set, importance as in the "
        "sweep. "
        "The plan found is then pruned and reconstructed (default settings) and scored on the test subset.", "",
    ] + _table(columns, cells) + ["", *_reward_means(rows), ""]


def _reward_means(rows: dict) -> list[str]:
    """Per (model, reward, budget mode, episodes) searched with several seeds: mean test top-1 and wall time."""
    import numpy as np

    groups: dict[tuple, list[dict]] = {}
    for key, row in rows.items():
        if "/reward/" in key:
            groups.setdefault((key.split("/")[0], row["reward"], row.get("budget_mode", "wall"), row["episodes"]),
                              []).append(row)
    lines = []
    for (model, reward, mode, episodes), found in groups.items():
        if len(found) < 2:
            continue
        top1 = [r["top1_reconstructed"] for r in found]
        lines.append(
            f"- {model}, {reward} reward, {mode}, {episodes} episodes, seeds "
            f"{', '.join(str(r.get('seed', 0)) for r in found)}: test top-1 after reconstruction "
            f"{np.mean(top1):.1%} ± {np.std(top1, ddof=1):.1%} (s.d.), search "
            f"{np.median([r['search_s'] for r in found]):.0f} s (median)"
        )
    return ["Over seeds:", "", *lines] if lines else []


def _screen_table(rows: dict) -> list[str]:
    screened = {key: row for key, row in rows.items() if "/screen/" in key}
    if not screened:
        return []
    cells = [
        [key.split("/")[0], row["plan"], f"{row['macs_fraction']:.1%}", f"{row['heldout_before']:.2%}",
         f"**{row['heldout_after']:.2%}**", f"{row['test_before']:.2%}", f"{row['test_after']:.2%}",
         f"{row['seconds']:.0f}"]
        for key, row in sorted(screened.items(), key=lambda item: -item[1]["heldout_after"])
    ]
    first = next(iter(screened.values()))
    columns = ["model", "plan", "MACs", "held-out before", "held-out after the short run", "test before",
               "test after the short run", "s"]
    return [
        "## Screening plans by a short fine-tuning (`screen`)", "",
        f"Each plan pruned ({first['importance']} importance), reconstructed, then distilled (KD "
        f"{first['distill_weight']:g}, lr {first['lr']:g}, cosine, seed {first['seed']}) on "
        f"{first['train_images']:,} training images and scored on {first['heldout_images']:,} "
        f"training images held out of both (the screen's choice); the test subset ({first['test_images']:,} "
        "images) only judges the screen. Sorted by the held-out score after the short run. The reference models "
        "were trained on every training image, so held-out training images score above the test set.", "",
    ] + _table(columns, cells) + [""]


def _validation(row: dict) -> str:
    fraction = row.get("val_fraction", 0.02)
    return f"{fraction:.0%} held out" if fraction else "none (last epoch kept)"


def _schedule(row: dict) -> str:
    warmup = row.get("warmup_fraction", 0.0)
    schedule = f"{row.get('batch_size', 128)}, " + (f"{warmup:.0%} linear" if warmup else "none")
    padding, flip = row.get("crop_padding_px", 4), row.get("horizontal_flip", True)
    if (padding, flip) == (4, True):
        return schedule
    augmentation = [f"crop pad {padding}" if padding else "no crop", "flip" if flip else "no flip"]
    return schedule + ", " + " + ".join(augmentation)


def _finetune_table(rows: dict) -> list[str]:
    cells = []
    for key, row in rows.items():
        if "/finetune/" not in key:
            continue
        loss = f"CE + KD {row['distill_weight']}" if row["distill_weight"] else "CE"
        if row["distill_weight"] and row.get("kd_temperature", 4.0) != 4.0:
            loss += f" (T {row['kd_temperature']:g})"
        if row.get("feature_distill_weight"):
            loss += f" + features {row['feature_distill_weight']:g}"
            loss += " (pruned sums on their kept channels too)" if row.get("feature_kept_channels") else ""
        if row.get("label_smoothing"):
            loss += f", label smoothing {row['label_smoothing']:g}"
        cells.append([
            key.split("/")[0], row["start"], row.get("reconstruction", ""), loss, str(row["train_images"]),
            str(row["lr"]), _schedule(row), str(row.get("seed", 0)), _validation(row),
            str(row.get("best_epoch", "?")), f"{row['top1_before']:.2%}", f"**{row['top1_after']:.2%}**",
            f"{row['top1_after_bn']:.2%}" if "top1_after_bn" in row else "", f"{row['seconds']:.0f}",
        ])
    if not cells:
        return []
    # rows that differ only in the training seed (column 7), with their mean
    by_setting: dict[tuple, list[list[str]]] = {}
    for cell in cells:
        by_setting.setdefault(tuple(cell[:7] + cell[8:10]), []).append(cell)
    over_seeds = [
        f"- {setting[0]} from {setting[1]}, {setting[3]}, {setting[4]} images, lr {setting[5]}, "
        f"{setting[6]}: seeds {', '.join(c[7] for c in group)}: "
        + " / ".join(c[11].strip("*") for c in group)
        + f", mean {sum(float(c[11].strip('*%')) for c in group) / len(group):.2f} %"
        for setting, group in by_setting.items()
        if len({c[7] for c in group}) > 1
    ]
    columns = ["model", "start", "reconstruction", "loss", "train images", "lr",
               "batch, warm-up (augmentation if not crop pad 4 + flip)", "seed",
               "validation", "epoch kept", "before", "after", "after + BN re-estimation", "s"]
    return [
        "## Fine-tuning from a reconstructed point (full 10,000-image test set; s: wall time under the load above)", "",
    ] + _table(columns, cells) + [
        "", "Train images: the fine-tuning set (the validation share of it held out); fewer than 50,000 means a "
        "fraction of an epoch, with the cosine schedule over that fraction. *Epoch kept*: the held-out images pick "
        "the best epoch and the start (epoch 0) competes; 0 means the start was returned unchanged. Peer bar for "
        "one CPU epoch at 50 % MACs (Torch-Pruning global L1, plain SGD 0.01, cosine; measured earlier on the "
        "2-core Xeon, full test set): "
        "ResNet-56 86.10 %, ResNet-20 82.48 %. The goal is ≥ 88 % for ResNet-56. *+ features W*: the "
        "feature-distillation term (`FinetuneConfig.feature_distill_weight`, now 20 by default): the squared error "
        "of every residual sum (Add output) the pruned model shares with the original at the same shape, relative "
        "to the original's mean square, weighted W beside the cross-entropy and KD terms.", "",
    ] + (["Over seeds (the same settings otherwise):", "", *over_seeds, ""] if over_seeds else [])
