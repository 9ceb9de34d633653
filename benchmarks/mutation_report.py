"""Sample and summarise a mutmut run (benchmarks/mutation.sh).

    python benchmarks/mutation_report.py sample .cache/mutation SEED SIZE > sample.txt
    python benchmarks/mutation_report.py .cache/mutation [LATER_WORKSPACE ...] [--sample FILE]

`sample` draws a seeded uniform random sample of the generated mutants, stratified per file (each file
gets its share of SIZE in proportion to its mutant count, at least one). The report gives, per file and
overall, the mutant counts, the sampled mutants' outcomes and the killed share with a 95 % Wilson
interval, then each sampled mutant that was not killed with its diff. Killed means a test failed or the
tests ran out of time under the mutant (mutmut's "killed" and "timeout"). Later workspaces (runs of
added tests against the mutants the first run left alive) override an outcome that was not a kill.
"""

from __future__ import annotations

import ast
import difflib
import functools
import json
import math
import random
import sys
from collections import Counter
from pathlib import Path

from mutmut.stats import status_by_exit_code

DETECTED = {"killed", "timeout"}


def mutants_by_file(work: Path) -> dict[str, list[str]]:
    found = {}
    for meta in sorted((work / "mutants").rglob("*.py.meta")):
        keys = sorted(json.loads(meta.read_text())["exit_code_by_key"])
        if keys:
            found[str(meta.relative_to(work / "mutants"))[: -len(".meta")]] = keys
    return found


def exit_codes(work: Path) -> dict[str, int | None]:
    codes = {}
    for meta in (work / "mutants").rglob("*.py.meta"):
        codes.update(json.loads(meta.read_text())["exit_code_by_key"])
    return codes


def draw_sample(by_file: dict[str, list[str]], seed: int, size: int) -> list[str]:
    total = sum(len(keys) for keys in by_file.values())
    rng = random.Random(seed)
    chosen = []
    for name, keys in by_file.items():
        share = max(1, round(size * len(keys) / total))
        chosen += rng.sample(keys, min(share, len(keys)))
    return chosen


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _row(name: str, generated: int, counts: Counter) -> str:
    run = sum(v for k, v in counts.items() if k != "not checked")
    killed = sum(counts[s] for s in DETECTED)
    low, high = wilson(killed, run)
    score = f"{killed / run:.1%} ({low:.1%}–{high:.1%})" if run else "—"
    other = run - killed - counts["survived"] - counts["no tests"]
    return (
        f"| {name} | {generated} | {sum(counts.values())} | {run} | {counts['killed']} | {counts['timeout']} | "
        f"{counts['survived']} | {counts['no tests']} | {other} | {score} |"
    )


@functools.cache
def _functions(mutated_file: Path) -> dict[str, list[str]]:
    lines = mutated_file.read_text().splitlines()
    return {
        node.name: lines[node.lineno - 1 : node.end_lineno]
        for node in ast.walk(ast.parse("\n".join(lines)))
        if isinstance(node, ast.FunctionDef)
    }


def mutant_diff(work: Path, source: str, key: str) -> list[str]:
    """The changed lines of mutant ``key`` against the original function (read from mutmut's mutated file;
    ``mutmut show`` takes seconds per mutant)."""
    name = key.rsplit(".", 1)[-1]
    functions = _functions(work / "mutants" / source)
    original, mutant = functions[name.rsplit("__mutmut_", 1)[0] + "__mutmut_orig"], functions[name]
    changed = difflib.unified_diff(original[1:], mutant[1:], lineterm="", n=0)
    return [line for line in changed if line[:1] in "+-" and line[:3] not in ("+++", "---")]


def merged_codes(works: list[Path]) -> dict[str, int | None]:
    codes = exit_codes(works[0])
    for later in works[1:]:
        for key, code in exit_codes(later).items():
            if key in codes and code is not None and status_by_exit_code[codes[key]] not in DETECTED:
                codes[key] = code
    return codes


def report(works: list[Path], sample: set[str]) -> None:
    work = works[0]
    by_file, codes = mutants_by_file(work), merged_codes(works)
    print("| file | mutants | sampled | run | killed | timeout | survived | no tests | other | killed share (95 % Wilson) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    totals: Counter = Counter()
    not_killed = []
    for name, keys in by_file.items():
        mine = [key for key in keys if key in sample]
        counts = Counter(status_by_exit_code[codes[key]] for key in mine)
        totals.update(counts)
        not_killed += [(name, k) for k in mine if status_by_exit_code[codes[k]] not in DETECTED | {"not checked"}]
        print(_row(f"`{name}`", len(keys), counts))
    print(_row("**all**", sum(len(keys) for keys in by_file.values()), totals))
    print("\n## Sampled mutants not killed\n")
    for source, key in not_killed:
        diff = mutant_diff(work, source, key)
        print(f"- `{key}` ({status_by_exit_code[codes[key]]})\n  ```diff\n  " + "\n  ".join(diff) + "\n  ```")


def main() -> None:
    if sys.argv[1] == "sample":
        work, seed, size = Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
        print("\n".join(draw_sample(mutants_by_file(work), seed, size)))
        return
    args = sys.argv[1:]
    sample_file = None
    if "--sample" in args:
        at = args.index("--sample")
        sample_file, args = Path(args[at + 1]), args[:at] + args[at + 2 :]
    works = [Path(a) for a in args]
    report(works, set((sample_file or works[0] / "sample.txt").read_text().split()))


if __name__ == "__main__":
    main()
