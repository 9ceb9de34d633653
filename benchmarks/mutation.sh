#!/bin/bash
# Mutation testing (mutmut 3) of the oracle, the plans, the pruning pass and the channel rules.
#
#     flock /tmp/agmc-heavy.lock benchmarks/mutation.sh [END_UTC]     e.g. benchmarks/mutation.sh 00:56
#
# mutmut derives module names from file paths and imports the mutated copy from mutants/, so the
# repository's folders are laid out as the installed package (passes/ and cli/ inside agmc_onnx/) in
# .cache/mutation. Each target runs in a capped stage, all ending by END_UTC, so that every target gets
# some coverage on a busy machine; mutmut only runs, per mutant, the tests that executed its function.
# Summarise with benchmarks/mutation_report.py.
set -e
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$ROOT/.cache/mutation
PY=${PY:-$ROOT/.venv/bin/python}
END=$(date -u -d "${1:-$(date -u -d '+40 min' +%H:%M)}" +%s)
rm -rf "$WORK" && mkdir -p "$WORK" && cd "$WORK"
cp -r "$ROOT/agmc_onnx" agmc_onnx
cp -r "$ROOT/passes" agmc_onnx/passes
cp -r "$ROOT/cli" agmc_onnx/cli
mkdir agmc_onnx/models && cp "$ROOT"/models/*.py agmc_onnx/models/ && ln -s "$ROOT/models/zoo" agmc_onnx/models/zoo
cp -r "$ROOT/tests" tests
ln -s "$ROOT/models" models && ln -s "$ROOT/examples" examples
find . -name __pycache__ -prune -exec rm -rf {} +
cat > pyproject.toml <<'TOML'
[tool.pytest.ini_options]
testpaths = ["tests"]
pythonpath = ["tests"]
addopts = "-m 'not slow' -p no:cacheprovider"
markers = ["slow: heavy tests"]
filterwarnings = ["ignore::DeprecationWarning:torch.*"]

[tool.mutmut]
source_paths = ["agmc_onnx"]
only_mutate = [
    "agmc_onnx/validate.py",
    "agmc_onnx/plan.py",
    "agmc_onnx/passes/prune_channels.py",
    "agmc_onnx/passes/mask_consumers.py",
    "agmc_onnx/groups/*",
]
also_copy = ["models", "examples"]
pytest_add_cli_args_test_selection = [
    "tests/validate",
    "tests/cli/test_validation_exits.py",
    "tests/groups",
    "tests/passes",
    "tests/search/test_budget.py",
]
TOML
set +e
stage() {  # stage NAME CAP_SECONDS PATTERN
    local name=$1 cap=$2 left=$(( END - $(date -u +%s) ))
    if (( left < 30 )); then echo "$name: skipped, out of time"; return; fi
    (( cap > left )) && cap=$left
    timeout "$cap" "$PY" -m mutmut run --max-children 2 "$3" > "log_$name.txt" 2>&1
    echo "$name: exit $? after at most ${cap}s, $(date -u +%H:%M:%S)"
}
stage validate 420 "agmc_onnx.validate*"
stage prune_channels 300 "agmc_onnx.passes.prune_channels*"
stage plan 300 "agmc_onnx.plan*"
stage groups 600 "agmc_onnx.groups*"
stage mask_consumers 300 "agmc_onnx.passes.mask_consumers*"
