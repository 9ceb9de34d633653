"""Search-efficiency study: best-so-far reward against episodes, several seeds, agmc / amc / random / uniform.

    python benchmarks/search_efficiency.py run --data ../shared/data/cifar10 --models mobilenetv2 \
        --seeds 0 1 2 --stages 100 200 300 --processes 2
    python benchmarks/search_efficiency.py report

``run`` extends every (model, policy, seed) search to each stage in turn (a stage waits for all searches of
the one before), so whatever budget all seeds have reached when it is stopped is a complete study; searches
resume from their run directories (a resumed search with more episodes logs exactly what one long search
would). Every search of a model scores the same reward set (seed 0), so uniform's reward is one number per
model. ``report`` writes ``efficiency.json``, ``efficiency.md`` and one plot per model from the logs.
It calls ``run_search`` rather than ``search_model`` only to wrap the reward in ``SharedCacheReward``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import statistics
import time
from pathlib import Path

from search_report import read_log

SHARED_MODELS = Path(__file__).resolve().parents[1] / ".." / "shared" / "models"
OUT = Path("benchmarks/results/search_efficiency")
LEARNED = ("agmc", "amc", "random")
VARIANTS = ("agmc+center", "agmc+budget", "random+budget", "agmc+rescale", "amc+rescale", "random+rescale")
COLORS = {
    "agmc": "tab:red", "amc": "tab:blue", "random": "tab:gray", "agmc+center": "tab:orange", "agmc+budget": "tab:green",
    "random+budget": "tab:olive", "agmc+rescale": "tab:purple", "amc+rescale": "tab:cyan",
    "random+rescale": "tab:brown",
}
CENTERS = {"center": "uniform", "budget": "budget-relative"}  # variant suffix -> SearchConfig.action_center


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def run_dir(out: Path, model: str, policy: str, seed: int) -> Path:
    return out / "runs" / (f"{model}_uniform" if policy == "uniform" else f"{model}_{policy}_s{seed}")


class SharedCacheReward:
    """The reward, with the scores every other search of the same model already measured: a kept set met
    before (the warm-up episodes of agmc, amc and random of one seed are the same random draws) is read,
    not re-evaluated. Rewards are deterministic, so only the ``cached`` flags and times of the log change.
    """

    def __init__(self, reward, runs: Path, model_name: str, own: Path) -> None:
        self.reward, self.runs, self.model_name, self.own = reward, runs, model_name, own

    @property
    def cache(self) -> dict:
        return self.reward.cache

    def __call__(self, selection):
        from agmc_onnx.search.reward import selection_key

        if selection_key(selection) not in self.reward.cache:
            for path in self.runs.glob(f"{self.model_name}_*/reward_cache.json"):
                try:
                    self.reward.cache.update(json.loads(path.read_text()))
                except json.JSONDecodeError:  # another search is writing it (atomically; a stale read)
                    continue
        sample = self.reward(selection)
        if not sample.cached:
            from agmc_onnx.io import write_bytes_atomic

            write_bytes_atomic(self.own / "reward_cache.json", json.dumps(self.reward.cache).encode())
        return sample


def search_job(job: tuple) -> str:
    """One search, extended (resumed) to ``episodes``; run in a worker process."""
    model_name, variant, seed, episodes, args = job
    # "agmc+center": actions centred on the uniform solution; "agmc+budget": budget-relative actions;
    # "agmc+rescale": episodes rescaled onto the budget instead of clipped by the wall
    policy, _, centred = variant.partition("+")
    rescaled = centred == "rescale"
    import torch

    from agmc_onnx.analysis import analyze_model
    from agmc_onnx.data import load_splits, spec_from_model
    from agmc_onnx.io import load_model
    from agmc_onnx.search import AccuracyReward, DDPGConfig, RewardConfig, SearchConfig, run_search

    torch.set_num_threads(1)
    model = load_model(SHARED_MODELS / f"cifar10_{model_name}.onnx")
    spec = spec_from_model(model)
    splits = load_splits(args.data, spec, reward_size=args.reward_size, seed=0)
    config = SearchConfig(
        policy=policy,
        n_episodes=episodes,
        flops_keep_ratio=args.flops,
        seed=seed,
        ddpg=DDPGConfig(warmup_episodes=args.warmup),
        action_center=CENTERS[centred] if centred and not rescaled else args.action_center,
        budget_mode="rescale" if rescaled else "wall",
    )
    analysis = analyze_model(model)
    directory = run_dir(args.out, model_name, variant, seed)
    directory.mkdir(parents=True, exist_ok=True)
    reward = AccuracyReward(analysis, splits.reward, spec, RewardConfig(threads=args.threads))
    shared = SharedCacheReward(reward, args.out / "runs", model_name, directory)
    started = time.perf_counter()
    logged = read_log(directory)
    result = run_search(analysis, shared, config, run_dir=directory, resume=True)
    keep_timings(directory, logged)
    return (
        f"{model_name} {variant} seed {seed}: {len(result.records)} episodes, best {result.best_reward:.4f} "
        f"(episode {result.best_episode + 1}), {time.perf_counter() - started:.0f} s this call"
    )


TIMING_FIELDS = ("cached", "eval_seconds", "episode_seconds")


def keep_timings(directory: Path, logged: list[dict]) -> None:
    """Give the episodes a search re-ran identically (a run directory without its checkpoint starts over,
    its rewards read from the shared cache) the timings they were first logged with: the study's seconds per
    episode are those of the first evaluation, not of a cache read."""
    from agmc_onnx.io import write_bytes_atomic

    records = read_log(directory)
    same = list(itertools.takewhile(
        lambda pair: all(pair[0][k] == pair[1][k] for k in ("episode", "keep_ratios", "reward")),
        zip(logged, records),
    ))
    if all(old[k] == new[k] for old, new in same for k in TIMING_FIELDS):
        return
    records[: len(same)] = [{**new, **{k: old[k] for k in TIMING_FIELDS}} for old, new in same]
    write_bytes_atomic(directory / "episodes.jsonl", "".join(json.dumps(r) + "\n" for r in records).encode())


def run(args: argparse.Namespace) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    settings = {k: str(v) for k, v in vars(args).items() if k != "func"}
    if args.policies and not (args.out / "settings.json").exists():
        (args.out / "settings.json").write_text(json.dumps(settings, indent=2))
    else:  # later runs (variants, other models) extend the study: its settings stay, each later run's are listed
        path = args.out / "settings_variants.json"
        earlier = json.loads(path.read_text()) if path.exists() else []
        earlier = [earlier] if isinstance(earlier, dict) else earlier
        path.write_text(json.dumps(earlier + [settings], indent=2))
    context = multiprocessing.get_context("spawn")
    with context.Pool(args.processes, maxtasksperchild=1) as pool:
        uniform = [(m, "uniform", 0, 1, args) for m in args.models if args.policies]
        for line in pool.imap_unordered(search_job, uniform):
            log(line)
        for stage in args.stages:
            # random first: its draws are the warm-up episodes of agmc and amc of the same seed (shared cache)
            order = sorted(args.policies, key=lambda p: p != "random")
            jobs = [(m, p, s, stage, args) for m in args.models for p in order[:1] for s in args.seeds]
            jobs += [(m, p, s, stage, args) for m in args.models for s in args.seeds for p in order[1:]]
            jobs += [(m, p, s, stage, args) for m in args.models for s in args.variant_seeds for p in args.variants]
            for line in pool.imap_unordered(search_job, jobs):
                log(line)
            log(f"stage {stage} done")


def test_scores(args: argparse.Namespace) -> None:
    """Test top-1 of every search's best plan (the plan a user gets), BN re-estimated on the reward set's
    calibration images as the reward does, no fine-tuning; ``test_scores.json``, resumable."""
    import torch

    from agmc_onnx.analysis import analyze_model
    from agmc_onnx.cost.session import create_session
    from agmc_onnx.data import load_splits, sample_subset, spec_from_model
    from agmc_onnx.evaluate import evaluate_accuracy
    from agmc_onnx.io import load_model, write_bytes_atomic
    from agmc_onnx.plan import PruningPlan
    from agmc_onnx.search import AccuracyReward, RewardConfig
    from agmc_onnx.search.features import search_order

    torch.set_num_threads(1)
    path = args.out / "test_scores.json"
    scores = json.loads(path.read_text()) if path.exists() else {}
    for model_name in args.models:
        model = load_model(SHARED_MODELS / f"cifar10_{model_name}.onnx")
        spec = spec_from_model(model)
        splits = load_splits(args.data, spec, reward_size=args.reward_size, seed=0)
        test = sample_subset(splits.test, args.test_images, seed=0)
        analysis = analyze_model(model)
        groups = search_order(analysis)
        reward = AccuracyReward(analysis, splits.reward, spec, RewardConfig(threads=1))
        for directory in sorted((args.out / "runs").glob(f"{model_name}_*")):
            records = read_log(directory)
            episodes = min(len(records), args.episodes)
            key = f"{directory.name}@{args.test_images}/e{episodes}"
            if not records or any(_scored(k, v, directory.name, args.test_images, episodes) for k, v in scores.items()):
                continue
            best = max(records[: args.episodes], key=lambda r: r["reward"])  # first of equals, as the search
            plan = PruningPlan({g.id: r for g, r in zip(groups, best["keep_ratios"])}, round_to=1, importance="l1")
            selection = reward.selection_of(plan)
            if abs(reward(selection).accuracy - best["reward"]) > 1e-9:  # the plan rebuilt is the one scored
                raise RuntimeError(f"{directory.name}: the rebuilt plan does not reproduce its logged reward")
            pruned = reward.pruned_model(selection)
            top1 = evaluate_accuracy(create_session(pruned), test, spec).top1
            scores[key] = {"episode": best["episode"], "reward": best["reward"], "test_top1": top1,
                           "episodes": episodes, "test_images": args.test_images}
            write_bytes_atomic(path, json.dumps(scores, indent=1).encode())
            log(f"{key}: best episode {best['episode']}, reward {best['reward']:.4f}, test top-1 {top1:.4f}")


def _scored(key: str, score: dict, run_name: str, test_images: int, episodes: int) -> bool:
    """Whether ``score`` (under ``key``) is the run's best plan within ``episodes``, on ``test_images``."""
    return key.split("@")[0] == run_name and score["test_images"] == test_images and score["episodes"] == episodes


def best_so_far(records: list[dict]) -> list[float]:
    best, curve = float("-inf"), []
    for record in records:
        best = max(best, record["reward"])
        curve.append(best)
    return curve


def first_reaching(curve: list[float], level: float) -> int | None:
    """The 1-based episode at which ``curve`` first reaches ``level`` (None: never)."""
    return next((i + 1 for i, value in enumerate(curve) if value >= level - 1e-12), None)


def test_top1(out: Path, run_name: str, episodes: int | None = None) -> float | None:
    """The ``test`` phase's score of a search's best plan within ``episodes`` (None: any budget; uniform has
    one), on the most test images scored, or None."""
    path = out / "test_scores.json"
    scores = json.loads(path.read_text()) if path.exists() else {}
    found = [v for k, v in scores.items()
             if k.split("@")[0] == run_name and (episodes is None or v["episodes"] == episodes)]
    return max(found, key=lambda v: v["test_images"])["test_top1"] if found else None


def summarise(out: Path, model: str, seeds: list[int], episodes: int | None = None) -> dict:
    """Per policy: the common episode budget (or ``episodes``: then only the policies every seed of which
    reached it), best-so-far curves per seed and their mean/min/max."""
    import numpy as np

    uniform = read_log(run_dir(out, model, "uniform", 0))
    settings = json.loads((out / "settings.json").read_text())
    summary = {
        "uniform_reward": uniform[0]["reward"] if uniform else None,
        "uniform_test_top1": test_top1(out, run_dir(out, model, "uniform", 0).name),
        "reward_images": int(settings["reward_size"]),
        "policies": {},
    }
    # One budget for every policy of the model: the fewest episodes any of its searches has logged.
    lengths = [len(read_log(d)) for d in (out / "runs").glob(f"{model}_*_s*") if d.name.split("_s")[-1].isdigit()]
    common = min([n for n in lengths if n] or [0]) if episodes is None else episodes
    for policy in LEARNED + VARIANTS:
        logs = {s: read_log(run_dir(out, model, policy, s)) for s in seeds}
        if episodes is not None and any(len(log_) < episodes for log_ in logs.values()):
            continue
        curves = {s: best_so_far(log_) for s, log_ in logs.items()}
        curves = {s: c for s, c in curves.items() if c}
        if not curves:
            continue
        budget = common
        stack = np.array([c[:budget] for c in curves.values()])
        mean, std = stack.mean(axis=0), stack.std(axis=0, ddof=1) if len(curves) > 1 else np.zeros(budget)
        reach = {s: first_reaching(c[:budget], summary["uniform_reward"]) for s, c in curves.items()}
        tests = {s: test_top1(out, run_dir(out, model, policy, s).name, budget) for s in curves}
        summary["policies"][policy] = {
            "test_top1": tests if all(v is not None for v in tests.values()) else None,
            "seeds": sorted(curves),
            "episodes": budget,
            "final_best": {s: c[budget - 1] for s, c in curves.items()},
            "mean": mean.tolist(),
            "std": std.tolist(),
            "min": stack.min(axis=0).tolist(),
            "max": stack.max(axis=0).tolist(),
            "episode_reaching_uniform": reach,
            "seconds_per_episode": float(
                np.mean([r["episode_seconds"] for log_ in logs.values() for r in log_[:budget]])
            ),
            "mean_reward_last_10": float(
                np.mean([r["reward"] for log_ in logs.values() for r in log_[budget - 10 : budget]])
            ),
        }
    return summary


def plot(out: Path, model: str, summary: dict, suffix: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.2))
    for policy, entry in summary["policies"].items():
        episodes = range(1, entry["episodes"] + 1)
        color = COLORS[policy]
        label = f"{policy} (mean of {len(entry['seeds'])} seeds, band min–max)"
        axis.plot(episodes, [100 * v for v in entry["mean"]], color=color, label=label)
        axis.fill_between(
            episodes, [100 * v for v in entry["min"]], [100 * v for v in entry["max"]], color=color, alpha=0.2
        )
    if summary["uniform_reward"] is not None:
        axis.axhline(100 * summary["uniform_reward"], color="black", linestyle=":", label="uniform (1 evaluation)")
    axis.set_xlabel("episode (= reward evaluations)")
    axis.set_ylabel(f"best-so-far reward: top-1 % on {summary['reward_images']} held-out train images")
    axis.set_title(f"{model}, 50 % MACs kept, no fine-tuning")
    axis.grid(alpha=0.3)
    axis.legend(loc="lower right", fontsize=8)
    path = out / f"best_so_far_{model}{suffix}.png"
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def table(summaries: dict) -> str:
    lines = [
        "| model | policy | seeds | episodes | best reward per seed | mean ± s.d. | episode reaching uniform "
        "per seed | mean reward of the last 10 episodes | mean s per episode (cached included) | test top-1 of the "
        "best plan per seed | mean test top-1 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for model, summary in summaries.items():
        uniform, uniform_test = summary["uniform_reward"], summary.get("uniform_test_top1")
        if uniform is not None:
            test = f"{100 * uniform_test:.1f} %" if uniform_test is not None else "—"
            lines.append(f"| {model} | uniform | — | 1 | {100 * uniform:.1f} % | — | — | — | — | {test} | {test} |")
        for policy, e in summary["policies"].items():
            finals = [100 * v for v in e["final_best"].values()]
            reach = ", ".join("never" if v is None else str(v) for v in e["episode_reaching_uniform"].values())
            lines.append(
                f"| {model} | {policy} | {', '.join(map(str, e['seeds']))} | {e['episodes']} "
                f"| {', '.join(f'{v:.1f}' for v in finals)} % | {100 * e['mean'][-1]:.1f} ± "
                f"{100 * e['std'][-1]:.1f} % | {reach} | {100 * e['mean_reward_last_10']:.1f} % "
                f"| {e['seconds_per_episode']:.1f} | {_tests(e)} |"
            )
    return "\n".join(lines)


def _tests(entry: dict) -> str:
    tests = entry.get("test_top1")
    if not tests:
        return "— | —"
    values = [100 * v for v in tests.values()]
    spread = f" ± {statistics.stdev(values):.1f}" if len(values) > 1 else ""
    return f"{', '.join(f'{v:.1f}' for v in values)} % | {statistics.mean(values):.1f}{spread} %"


def header(settings: dict, summaries: dict, out: Path) -> str:
    budgets = {m: min(e["episodes"] for e in s["policies"].values()) for m, s in summaries.items()}
    return (
        f"# Search efficiency at {float(settings['flops']):.0%} MACs kept, no fine-tuning\n\n"
        f"Searches: {', '.join(f'{m} {b} episodes' for m, b in budgets.items())} per policy and seed (the "
        f"budget every seed reached; planned {settings['stages'].strip('[]').split(', ')[-1]}), seeds "
        f"{settings['seeds']}, random warm-up {settings['warmup']} episodes for agmc/amc. Reward: top-1 on "
        f"{settings['reward_size']} held-out TRAIN images (seed 0, the same for every search) after "
        "BatchNormalization re-estimation on 256 of them; the curves and this table are that reward, not "
        "test accuracy. Episodes of one seed that repeat a kept set another search already scored (the "
        "shared random warm-up) read its score. 'Episode reaching uniform': the first episode whose reward "
        "is ≥ uniform's (one evaluation). 'Test top-1 of the best plan': the plan of the search's best-reward "
        "episode, pruned, BN re-estimated as the reward does, scored on test images (the count is in each key of "
        "test_scores.json: 10,000 for MobileNetV2, 2,000 for ResNet-56), no fine-tuning "
        "(`search_efficiency.py test`; the reward is the best of many noisy evaluations, the test score is not). "
        "Machine: the shared 2-core box, `nice -n 19`, "
        f"{settings['processes']} searches side by side, onnxruntime {settings['threads']} thread(s) each; "
        "seconds per episode are inflated by the other work on the machine.\n\n" + variants_note(out)
    )


def variants_note(out: Path) -> str:
    """How the variants were run, when they were run after the study (``settings_variants.json``)."""
    path = out / "settings_variants.json"
    if not path.exists():
        return ""
    runs = json.loads(path.read_text())
    lines = [
        f"{r['models']}: {'policies ' + r['policies'] + ' and ' if r['policies'] != '[]' else ''}variants "
        f"{r['variants']} (seeds {r['variant_seeds']}, planned {r['stages'].strip('[]').split(', ')[-1]} "
        f"episodes, random warm-up {r['warmup']}, {r['processes']} side by side at low priority)"
        for r in ([runs] if isinstance(runs, dict) else runs)
    ]
    return (
        "Later runs: " + "; ".join(lines) + ". agmc+center: action 0.5 is the uniform keep ratio; "
        "+budget: action 0.5 is the uniform keep ratio of the budget still left after the earlier groups "
        "(`--action-center budget-relative`), so random+budget is random search in that action space. A "
        "variant's warm-up draws map to other plans than random's, so it shares no scores with them. +rescale: "
        "the steps are not clipped by the wall; the finished episode's keep ratios are multiplied by one factor, "
        "the largest that meets the budget (`--budget-mode rescale`). Every "
        "row is cut to the same episode budget.\n\n"
    )


def report(args: argparse.Namespace) -> None:
    summaries = {}
    for model in args.models:
        summary = summarise(args.out, model, args.seeds)
        if summary["policies"]:
            summaries[model] = summary
            print(plot(args.out, model, summary))
    longer = {}
    for model in args.models if args.longer else []:
        summary = summarise(args.out, model, args.seeds, args.longer)
        if summary["policies"]:
            longer[model] = summary
            print(plot(args.out, model, summary, f"_{args.longer}"))
    (args.out / "efficiency.json").write_text(json.dumps({**summaries, "longer": longer}, indent=2))
    text = header(json.loads((args.out / "settings.json").read_text()), summaries, args.out) + table(summaries) + "\n"
    if longer:
        text += (
            f"\n## {args.longer} episodes: the searches run that long\n\n"
            f"The same searches extended (resumed) to {args.longer} episodes; only the policies every seed of "
            f"which reached them. Test top-1: the best plan within {args.longer} episodes. Plot: "
            + ", ".join(f"best_so_far_{m}_{args.longer}.png" for m in longer) + ".\n\n" + table(longer) + "\n"
        )
    (args.out / "efficiency.md").write_text(text)
    print(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--out", type=Path, default=OUT)
    commands = parser.add_subparsers(dest="command", required=True)
    runner = commands.add_parser("run", help="run (or extend) the searches")
    runner.add_argument("--data", type=Path, default=Path("../shared/data/cifar10"))
    runner.add_argument("--models", nargs="+", default=["mobilenetv2", "resnet56"])
    runner.add_argument("--policies", nargs="*", default=list(LEARNED))
    runner.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    runner.add_argument("--variants", nargs="*", default=["agmc+center"], help="diagnostic variants, after the rest")
    runner.add_argument("--variant-seeds", nargs="*", type=int, default=[0, 1, 2])
    runner.add_argument("--stages", nargs="+", type=int, default=[100, 200, 300])
    runner.add_argument("--warmup", type=int, default=25, help="random warm-up episodes of agmc/amc (AGMC's 25)")
    runner.add_argument("--action-center", choices=["none", "uniform", "budget-relative"], default="none")
    runner.add_argument("--flops", type=float, default=0.5)
    runner.add_argument("--reward-size", type=int, default=300)
    runner.add_argument("--threads", type=int, default=1, help="onnxruntime threads per search process")
    runner.add_argument("--processes", type=int, default=2, help="searches run side by side")
    runner.set_defaults(func=run)
    tester = commands.add_parser("test", help="test top-1 of each search's best plan, no fine-tuning")
    tester.add_argument("--data", type=Path, default=Path("../shared/data/cifar10"))
    tester.add_argument("--models", nargs="+", default=["mobilenetv2", "resnet56"])
    tester.add_argument("--reward-size", type=int, default=300)
    tester.add_argument("--test-images", type=int, default=10000)
    tester.add_argument("--episodes", type=int, default=100, help="best plan within this many episodes")
    tester.set_defaults(func=test_scores)
    reporter = commands.add_parser("report", help="table, JSON and plots from the run directories")
    reporter.add_argument("--models", nargs="+", default=["mobilenetv2", "resnet56"])
    reporter.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    reporter.add_argument("--longer", type=int, default=None,
                          help="also a table of the searches that reached this many episodes")
    reporter.set_defaults(func=report)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
