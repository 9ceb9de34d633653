"""Start-up cost: heavy libraries load only inside the commands that need them."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import click
import pytest

from agmc_onnx.cli.main import COMMANDS, _summary, cli
from agmc_onnx.models.zoo import demo_data_path, zoo_model_path

HEAVY = ("torch", "torch_geometric", "matplotlib")

# Runs each command in one fresh interpreter and records which heavy modules were loaded after it.
_PROBE = textwrap.dedent(
    """
    import json, sys
    from agmc_onnx.cli.main import cli

    loaded = {}
    for name, args in json.loads(sys.argv[1]):
        try:
            cli.main(args, prog_name="agmc-onnx", standalone_mode=False)
        except SystemExit as exc:  # --help exits through click
            assert not exc.code, (name, exc.code)
        loaded[name] = sorted(m for m in sys.modules if m.split(".")[0] in json.loads(sys.argv[2]))
    print(json.dumps(loaded))
    """
)


def _modules_after(commands: list[tuple[str, list[str]]], watched: tuple[str, ...]) -> dict[str, list[str]]:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(commands), json.dumps(watched)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_help_imports_no_model_library() -> None:
    loaded = _modules_after([("help", ["--help"])], (*HEAVY, "onnx", "onnxruntime", "networkx", "numpy"))
    assert loaded == {"help": []}


def test_inspect_prune_and_eval_never_import_torch(tmp_path: Path) -> None:
    """Nor networkx for inspect and prune: only the search's graph features use it (a third of a second)."""
    model = str(zoo_model_path("resnet20"))
    commands = [
        ("inspect", ["inspect", model]),
        ("prune", ["prune", model, "--keep", "0.5", "-o", str(tmp_path / "pruned.onnx")]),
        (
            "eval",
            ["eval", model, "--data", str(demo_data_path()), "--limit", "20", "--cache-dir", str(tmp_path / "c")],
        ),
    ]
    loaded = _modules_after(commands, (*HEAVY, "networkx"))
    assert loaded["inspect"] == loaded["prune"] == []
    assert not [name for name in loaded["eval"] if name.split(".")[0] in HEAVY]
    assert (tmp_path / "pruned.onnx").exists()


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_summary_is_the_commands_own(name: str) -> None:
    command = cli.get_command(click.Context(cli), name)
    assert command.name == name
    for limit in (45, 80, 200):
        assert _summary(name).get_short_help_str(limit) == command.get_short_help_str(limit)
