"""Run the README's `inspect` and `prune` examples on the shipped ResNet-56 and record their output.

    python benchmarks/readme_cli.py -o benchmarks/results/readme_cli.md

The README quotes these outputs; the times printed by `inspect` depend on machine load.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

MODEL = "models/zoo/cifar10_resnet56.onnx"


def _run(args: list[str]) -> str:
    exe = shutil.which("agmc-onnx") or str(Path(sys.executable).with_name("agmc-onnx"))
    done = subprocess.run([exe, *args], capture_output=True, text=True, check=True)
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, required=True)
    out = parser.parse_args().output
    with tempfile.TemporaryDirectory() as tmp:
        pruned = Path(tmp) / "resnet56-pruned.onnx"
        sections = [
            (f"agmc-onnx inspect {MODEL}", _run(["inspect", MODEL])),
            (
                f"agmc-onnx prune {MODEL} --keep 0.5 --round-to 8 -o resnet56-pruned.onnx",
                _run(["prune", MODEL, "--keep", "0.5", "--round-to", "8", "-o", str(pruned)]).replace(
                    str(pruned), "resnet56-pruned.onnx"
                ),
            ),
        ]
    text = ["# README command-line examples, as run", ""]
    for command, output in sections:
        text += [f"`{command}`", "", "```", output.rstrip(), "```", ""]
    out.write_text("\n".join(text))
    print(out.read_text())


if __name__ == "__main__":
    main()
