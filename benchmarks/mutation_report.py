"""Summarise a mutmut run (benchmarks/mutation.sh): per-file score and the surviving mutants' diffs.

    python benchmarks/mutation_report.py .cache/mutation > /tmp/mutation_summary.md

The score is killed / (killed + survived + no tests + timeout) over the mutants that were run;
mutants the capped run did not reach are counted separately as "not run".
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

KILLED = {1, 3, 37}
STATUS = {0: "survived", 33: "no tests", 5: "no tests", 36: "timeout", -24: "timeout", 24: "timeout", 152: "timeout"}


def _status(code: int | None) -> str:
    if code is None:
        return "not run"
    return "killed" if code in KILLED else STATUS.get(code, "suspicious")


def main() -> None:
    work = Path(sys.argv[1])
    rows, survivors = [], []
    totals: Counter = Counter()
    for meta in sorted((work / "mutants").rglob("*.py.meta")):
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        if not codes:
            continue
        counts = Counter(_status(c) for c in codes.values())
        totals.update(counts)
        run = sum(v for k, v in counts.items() if k != "not run")
        score = f"{counts['killed'] / run:.1%}" if run else "—"
        name = str(meta.relative_to(work / "mutants"))[: -len(".meta")]
        rows.append(
            f"| `{name}` | {len(codes)} | {run} | {counts['killed']} | {counts['survived']} | "
            f"{counts['no tests']} | {counts['timeout'] + counts['suspicious']} | {score} |"
        )
        survivors += [key for key, code in codes.items() if _status(code) in ("survived", "no tests")]
    run = sum(v for k, v in totals.items() if k != "not run")
    print("| file | mutants | run | killed | survived | no tests | timeout/suspicious | killed of run |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(
        f"| **all** | {sum(totals.values())} | {run} | {totals['killed']} | {totals['survived']} | "
        f"{totals['no tests']} | {totals['timeout'] + totals['suspicious']} | "
        f"{totals['killed'] / run:.1%} |" if run else ""
    )
    print("\n## Surviving mutants\n")
    for key in survivors:
        shown = subprocess.run(
            [sys.executable, "-m", "mutmut", "show", key], cwd=work, capture_output=True, text=True
        ).stdout
        diff = [line for line in shown.splitlines() if line.startswith(("+", "-")) and line[:3] not in ("+++", "---")]
        print(f"- `{key}`\n  ```diff\n  " + "\n  ".join(diff) + "\n  ```")


if __name__ == "__main__":
    main()
