#!/usr/bin/env bash
# One command on a machine with an NVIDIA GPU and nothing prepared: environment, the test subset that needs
# neither Quantum ESPRESSO nor torch, then benchmarks/gpu_check.py (E+F, HVP, force constants at 3³/9³/13³ for
# SevenNet-0 and an OAM-L-sized model, `phonjax predict` cold/warm, q-throughput) → one JSON. About 8 minutes.
#
#   bash benchmarks/gpu_check.sh OUT.json [--offline|--online] [--quick]
#
# Environment:
#   online  (PyPI reachable, or --online): a fresh venv in $PHONJAX_GPU_VENV (default /tmp/phonjax-gpu-venv) with
#           "jax[cuda12]" and phonjax's dependencies.
#   offline (no network, or --offline): the machine's python3 (it must already have jax with a CUDA plugin, flax,
#           optax, orbax-checkpoint, numpy, scipy, h5py, matplotlib, pyyaml, tqdm, pytest) plus the wheels carried
#           in ./.whl/ (e3nn-jax, vesin, ase, spglib, seekpath, phonopy, symfc, phonors, sympy, mpmath, attrs,
#           packaging) installed into /tmp/site with --no-index --no-deps.
# SevenNet-0 must be converted beforehand (torch + sevenn, not needed here) into ./.cache/models/sevennet-0:
#   phonjax convert sevennet 7net-0 --out .cache/models/sevennet-0
# Budgets (seconds, env): PHONJAX_GPU_TEST_TIMEOUT (tests, default 150), PHONJAX_GPU_BUDGET (whole script, 470).
set -u
cd "$(dirname "$0")/.."
START=$(date +%s)
OUT_JSON=${1:?usage: bash benchmarks/gpu_check.sh OUT.json [--offline|--online] [--quick]}
shift
MODE=auto
QUICK=()
for a in "$@"; do
  case "$a" in
    --offline) MODE=offline ;;
    --online) MODE=online ;;
    --quick) QUICK=(--quick) ;;
    *) echo "gpu_check.sh: unknown option $a" >&2; exit 2 ;;
  esac
done
TEST_TIMEOUT=${PHONJAX_GPU_TEST_TIMEOUT:-150}
BUDGET=${PHONJAX_GPU_BUDGET:-470}
export XLA_PYTHON_CLIENT_PREALLOCATE=false   # child processes (predict cold/warm) share the device
export PYTHONUNBUFFERED=1
say() { echo "[gpu_check.sh +$(( $(date +%s) - START ))s] $*"; }

if [ "$MODE" = auto ]; then
  if timeout 6 python3 -c "import urllib.request as u; u.urlopen('https://pypi.org/simple/jax/', timeout=5)" \
      >/dev/null 2>&1; then MODE=online; else MODE=offline; fi
fi
say "environment: $MODE"
if [ "$MODE" = online ]; then
  VENV=${PHONJAX_GPU_VENV:-/tmp/phonjax-gpu-venv}
  python3 -m venv "$VENV" || exit 3
  PY="$VENV/bin/python"
  "$PY" -m pip install -q --upgrade pip
  "$PY" -m pip install -q "jax[cuda12]" flax "e3nn-jax>=0.20" optax orbax-checkpoint "ase>=3.23" vesin spglib \
      seekpath "phonopy>=2.26" h5py pyyaml tqdm matplotlib scipy pytest || exit 3
  export PYTHONPATH="$PWD"
else
  PY=python3
  SITE=${PHONJAX_GPU_SITE:-/tmp/site}
  if ls .whl/*.whl >/dev/null 2>&1; then
    "$PY" -m pip install -q --upgrade --no-index --no-deps --target "$SITE" .whl/*.whl || exit 3
  else
    say "no .whl/ folder: relying on what $PY already has"
  fi
  export PYTHONPATH="$SITE:$PWD"
fi
if ! INFO=$("$PY" -c 'import sys, jax, flax, e3nn_jax, vesin, ase, spglib, phonopy
print(sys.executable, "jax", jax.__version__, jax.devices())' 2>&1); then
  say "environment incomplete: $(echo "$INFO" | tail -1)"; exit 3
fi
say "python: $INFO"

say "tests (-m 'not qe and not torch and not slow', timeout ${TEST_TIMEOUT}s)"
TEST_LOG=$(mktemp /tmp/phonjax-gpu-tests.XXXX.log)
if [ ${#QUICK[@]} -eq 0 ]; then
  timeout "$TEST_TIMEOUT" "$PY" -m pytest -v -rfE -p no:cacheprovider -m "not qe and not torch and not slow" tests \
      >"$TEST_LOG" 2>&1
  TEST_RC=$?
else
  timeout "$TEST_TIMEOUT" "$PY" -m pytest -q -p no:cacheprovider tests/test_compile_cache.py >"$TEST_LOG" 2>&1
  TEST_RC=$?
fi
[ "$TEST_RC" = 124 ] && echo "(timed out after ${TEST_TIMEOUT}s)" >>"$TEST_LOG"
grep -E "^(FAILED|ERROR)" "$TEST_LOG" | head -20
TEST_SUMMARY=$(grep -E "^=+ .*(passed|failed|error)|timed out" "$TEST_LOG" | tail -1)
grep -E " (FAILED|ERROR)" "$TEST_LOG" | head -5  # -v names each test as it ends: a timed-out run still shows which failed
say "tests rc=$TEST_RC: $TEST_SUMMARY"
cp "$TEST_LOG" "${OUT_JSON%.json}.tests.log" 2>/dev/null || true

LEFT=$(( BUDGET - ( $(date +%s) - START ) - 15 ))
[ "$LEFT" -lt 60 ] && LEFT=60
say "measurements (budget ${LEFT}s)"
"$PY" benchmarks/gpu_check.py --out "$OUT_JSON" --budget-s "$LEFT" --pytest-rc "$TEST_RC" \
    --pytest-summary "$TEST_SUMMARY" "${QUICK[@]}"
RC=$?
say "done (gpu_check.py rc=$RC): $OUT_JSON"
exit $RC
