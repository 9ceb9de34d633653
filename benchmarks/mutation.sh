#!/bin/bash
# Mutation testing (mutmut 3) of the oracle, the plans, the pruning pass and the channel rules on a
# seeded uniform random sample of the mutants, stratified per file (the whole set does not fit on a
# 2-core machine).
#
#     benchmarks/mutation.sh [SEED] [SIZE]            defaults: 10 400
#     .venv/bin/python benchmarks/mutation_report.py .cache/mutation
#
# Environment: SAMPLE=FILE runs the mutant names listed in FILE instead of drawing a sample (e.g.
# benchmarks/results/mutation_sample.txt, the committed sample); TESTS="PATH ..." replaces the test
# selection (e.g. only new tests, against the mutants an earlier run left alive); WORK=DIR (default
# .cache/mutation) is the workspace.
#
# mutmut derives module names from file paths and imports the mutated copy from mutants/, so the
# repository's folders are laid out as the installed package (passes/ and cli/ inside agmc_onnx/) in
# .cache/mutation. Step 1 generates every mutant and records which tests execute which function (a
# `mutmut run` whose filter matches no mutant stops right after that); step 2 draws the sample
# (mutation_report.py sample); step 3 runs it. mutmut runs, per mutant, only the selected tests that
# executed its function, fastest first, stopping at the first failure. Everything runs at nice 19 with
# one worker: the machine is shared with latency measurements.
set -e
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${WORK:-$ROOT/.cache/mutation}
case $WORK in /*) ;; *) WORK=$ROOT/$WORK ;; esac
[ -n "$SAMPLE" ] && SAMPLE=$(realpath "$SAMPLE")
TESTS=${TESTS:-tests/validate tests/cli/test_validation_exits.py tests/groups tests/passes tests/search/test_budget.py tests/test_plan.py}
PY=${PY:-$ROOT/.venv/bin/python}
SEED=${1:-10}
SIZE=${2:-400}
rm -rf "$WORK" && mkdir -p "$WORK" && cd "$WORK"
cp -r "$ROOT/agmc_onnx" agmc_onnx
cp -r "$ROOT/passes" agmc_onnx/passes
cp -r "$ROOT/cli" agmc_onnx/cli
mkdir agmc_onnx/models && cp "$ROOT"/models/*.py agmc_onnx/models/ && ln -s "$ROOT/models/zoo" agmc_onnx/models/zoo
cp -r "$ROOT/tests" tests
ln -s "$ROOT/models" models && ln -s "$ROOT/examples" examples
find . -name __pycache__ -prune -exec rm -rf {} +
cat > pyproject.toml <<TOML
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
$(set -f; for t in $TESTS; do echo "    \"$t\","; done)
]
TOML
MUTMUT="nice -n 19 $PY -m mutmut run --max-children 1"
echo "generate + test stats: $(date -u +%H:%M:%S)"
$MUTMUT "agmc_onnx.no_such_mutant*" > log_generate.txt 2>&1 || grep -q "nothing matches" log_generate.txt
if [ -n "$SAMPLE" ]; then
    cp "$SAMPLE" sample.txt
else
    "$PY" "$ROOT/benchmarks/mutation_report.py" sample . "$SEED" "$SIZE" > sample.txt
fi
echo "run $(wc -l < sample.txt) mutants (${SAMPLE:-seed $SEED}) against: $TESTS; $(date -u +%H:%M:%S)"
set +e
$MUTMUT $(cat sample.txt) > log_run.txt 2>&1
echo "mutmut exit $?: $(date -u +%H:%M:%S)"
