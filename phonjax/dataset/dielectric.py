"""ε∞ and Z* from a Γ-only QE DFPT run (ph.x ``epsil``, ``zeu``, no phonons) at its own k-grid.

The dielectric response of a smaller-gap semiconductor converges with k far more slowly than its phonons
(docs: a zincblende needed k 8³ for ε∞ and the Z* sum rule where k 6³ had converged the phonons), so
``run_dfpt`` can take ε∞ and Z* from this cheaper run at a denser grid and write them into the q-grid run's
Γ dynamical-matrix file before q2r (``patch_dyn_dielectric``). ``run_born`` is this step alone: the part of
DFPT a user needs besides an ML model, written as a phonopy BORN file.

Layout: ``<qe_dir>/<name>_scf.{in,out}``, ``<qe_dir>/<name>_ph.{in,out}`` (resumable, see runner.run_qe).
"""
from __future__ import annotations

import re
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..born import Born
from ..structure import Crystal
from ..io.qe import parse_ph_dielectric
from .qe_io import PwSettings, write_ph_input, write_pw_input
from .runner import run_qe

# a violation of Σ_s Z*_s = 0 above this (e, largest tensor element) is reported: it is a sign of an
# unconverged k-grid or cutoff (see docs/qe-notes), not only of numerical noise
NEUTRALITY_WARN_E = 1e-3


@dataclass(frozen=True)
class Dielectric:
    """ε∞ (3,3) and Z* (n,3,3) [atom, E, u] in e, as computed (``zstar_raw``) and with neutrality imposed
    (``zstar``); ``violation``: max |Σ_s Z*_s| (e) before imposing it; ``seconds``: wall time per QE step."""

    epsilon: np.ndarray
    zstar: np.ndarray
    zstar_raw: np.ndarray
    violation: float
    seconds: dict


def neutral(epsilon, zstar_raw, seconds=None, *, source: str = "DFPT") -> Dielectric:
    """A Dielectric with neutrality imposed; warns when the violation exceeds NEUTRALITY_WARN_E."""
    z = np.asarray(zstar_raw, dtype=np.float64)
    violation = float(np.abs(z.sum(axis=0)).max())
    if violation > NEUTRALITY_WARN_E:
        warnings.warn(f"{source}: the Born charges violate charge neutrality by {violation:.3f} e (imposed by "
                      f"subtracting the mean); a large violation means an unconverged k-grid or cutoff "
                      f"(a denser `epsil_kpts` helps)", stacklevel=2)
    # the charge sum rule as everywhere in phonjax (Born.from_arrays), with no limit: DFPT output is reported, not refused
    imposed = Born.from_arrays(z, epsilon, max_correction=np.inf, symmetrize_epsilon=False).zstar
    return Dielectric(np.asarray(epsilon, dtype=np.float64), imposed, z, violation, dict(seconds or {}))


def run_dielectric(crystal: Crystal, pw: PwSettings, *, pseudo_dir, pseudo_files: dict, qe_dir, name: str,
                   tr2_ph: float = 1e-16, run_kw: dict | None = None) -> Dielectric:
    """scf at ``pw`` (its k-grid) then ph.x at Γ with epsil + zeu only (trans=.false.); resumable.
    ph.x prints Z* with 5 decimals in this mode (ε∞ with 9): that is the precision of the result."""
    run_kw = dict(run_kw or {})
    qe_dir = Path(qe_dir)
    text = write_pw_input(crystal, pw, pseudo_dir=pseudo_dir, pseudo_files=pseudo_files, calculation="scf",
                          prefix=name, control={"disk_io": None})
    scf = run_qe("pw.x", text, qe_dir, f"{name}_scf", resume=True, **run_kw)
    text = write_ph_input(prefix=name, fildyn=f"{name}.dyn", tr2_ph=tr2_ph, epsil=True, trans=False,
                          title=f"dielectric response of {name} at Gamma")
    ph = run_qe("ph.x", text, qe_dir, f"{name}_ph", resume=True, **run_kw)
    eps, z_raw = parse_ph_dielectric(ph.output_path.read_text(), asr=False)
    if z_raw.shape[0] != len(crystal.numbers):
        raise ValueError(f"ph.x reported Z* for {z_raw.shape[0]} atoms, the structure has {len(crystal.numbers)}")
    shutil.rmtree(qe_dir / "tmp" / f"{name}.save", ignore_errors=True)
    return neutral(eps, z_raw, {"scf": scf.seconds, "ph_gamma": ph.seconds}, source=f"QE {name}")


def _matrix_lines(m) -> list[str]:
    return ["  " + "".join(f"{x:22.12f}" for x in row) for row in np.asarray(m)]


def patch_dyn_dielectric(text: str, epsilon: np.ndarray, zstar: np.ndarray) -> str:
    """Replace the 'Dielectric Tensor', 'Effective Charges E-U' and (when present) 'U-E' blocks of a ph.x
    Γ dynamical-matrix file with ``epsilon`` (3,3) and ``zstar`` (n,3,3) [atom, E, u] (q2r reads them)."""
    eps_block = ["     Dielectric Tensor:", ""] + _matrix_lines(epsilon)
    out, n = re.subn(r"     Dielectric Tensor:\s*\n\s*\n(?:[^\n]*\n){3}", "\n".join(eps_block) + "\n", text, count=1)
    if n != 1:
        raise ValueError("the dynamical-matrix file has no dielectric tensor to replace")
    for key, mats in (("E-U", zstar), ("U-E", np.swapaxes(zstar, 1, 2))):
        pat = re.compile(r"(     Effective Charges " + key + r"[^\n]*\n\s*\n)((?:\s*atom\s*#\s*\d+\s*\n(?:[^\n]*\n){3})+)")
        m = pat.search(out)
        if m is None:
            if key == "E-U":
                raise ValueError("the dynamical-matrix file has no 'Effective Charges E-U' block to replace")
            continue
        body = []
        for i, z in enumerate(mats):
            body += [f"     atom # {i + 1:4d}"] + _matrix_lines(z)
        out = out[:m.start(2)] + "\n".join(body) + "\n" + out[m.end(2):]
    return out
