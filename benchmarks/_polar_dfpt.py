"""DFPT phonons on the q-grid itself, for the thermal comparison of benchmarks/polar_benchmark.py: every
dynamical matrix ph.x wrote (``examples/<X>/dfpt/qe/<X>.dyn1…``, each q of every star) diagonalised here.

These are DFPT's own frequencies on its grid (no interpolation, no dipole–dipole model): the thermal
quantities of the reference are computed on exactly that mesh, and the model's on the same q-points, so that
the comparison needs no q2r/matdyn reader (phonjax has none). At Γ the matrix is the analytic one (no
non-analytic term), as phonopy's mesh and phonjax's thermal mesh without a q direction, with the simple
acoustic sum rule imposed on it (ph.x's raw Γ matrix has acoustic modes of ~1 THz).

Units: QE writes C(q) in Ry/bohr² (not mass-weighted) and q in Cartesian 2π/alat; frequencies here in THz,
q-points in reduced coordinates of the primitive reciprocal basis (no 2π).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


def _blocks(lines: list[str], start: int, nat: int) -> tuple[np.ndarray, int]:
    """(3·nat, 3·nat) complex matrix of one ``Dynamical Matrix`` record whose first 'na nb' line is ``start``."""
    d = np.zeros((3 * nat, 3 * nat), dtype=np.complex128)
    k = start
    for _ in range(nat * nat):
        a, b = (int(x) for x in lines[k].split()[:2])
        for i in range(3):
            v = [float(x) for x in lines[k + 1 + i].split()]
            d[3 * (a - 1) + i, 3 * (b - 1):3 * b] = np.array(v[0::2]) + 1j * np.array(v[1::2])
        k += 4
    return d, k


def read_dyn_file(path: Path, nat: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """[(q Cartesian in 2π/alat (3,), C (3nat, 3nat) Ry/bohr²)] of every q of a ph.x dynamical-matrix file."""
    lines = Path(path).read_text().splitlines()
    out, k = [], 0
    while k < len(lines):
        if "Dynamical  Matrix in cartesian axes" in lines[k]:
            qline = next(j for j in range(k, k + 5) if lines[j].strip().startswith("q = ("))
            q = np.array([float(x) for x in lines[qline].split("(")[1].split(")")[0].split()])
            first = next(j for j in range(qline + 1, qline + 4) if len(lines[j].split()) == 2)
            mat, k = _blocks(lines, first, nat)
            out.append((q, mat))
        else:
            k += 1
    return out


def grid_frequencies(dfpt_dir: Path, prim) -> tuple[np.ndarray, np.ndarray]:
    """(q reduced (nq, 3), frequencies (nq, 3n) THz ascending) of every q of the DFPT grid in
    ``dfpt_dir/qe/*.dyn[1-9]*``; ``prim``: the phonjax Crystal (its masses, cell; same atom order)."""
    from phonjax import units

    files = sorted(Path(dfpt_dir, "qe").glob("*.dyn[1-9]*"), key=lambda p: int(p.name.rsplit("dyn", 1)[1]))
    if not files:
        raise FileNotFoundError(f"no ph.x dynamical matrices in {dfpt_dir}/qe")
    header = Path(files[0]).read_text().splitlines()[2].split()
    alat = float(header[3]) * units.BOHR_A
    nat = prim.n_atoms
    m = np.repeat(np.asarray(prim.masses, dtype=np.float64), 3)
    qs, fs = [], []
    for f in files:
        for q_cart, c in read_dyn_file(f, nat):
            if np.abs(q_cart).max() < 1e-10:  # Γ: the acoustic sum rule, as matdyn's asr='simple'
                c = c.copy()
                for a in range(nat):
                    c[3 * a:3 * a + 3, 3 * a:3 * a + 3] -= c[3 * a:3 * a + 3].reshape(3, nat, 3).sum(axis=1)
            d = c * units.RYDBERG_EV / units.BOHR_A ** 2 / np.sqrt(np.outer(m, m))
            d = 0.5 * (d + d.conj().T)
            w2 = np.linalg.eigvalsh(d)
            fs.append(np.sign(w2) * np.sqrt(np.abs(w2)) * units.VASP_TO_THZ)
            qs.append(np.asarray(prim.cell) @ q_cart / alat)
    q = np.array(qs)
    _check_frame(files[0], prim, alat)
    grid = Path(dfpt_dir, "qe", files[0].name.rsplit("dyn", 1)[0] + "dyn0")
    if grid.is_file():
        n = np.array([int(x) for x in grid.read_text().split()[:3]])
        if len(q) != int(np.prod(n)):
            raise ValueError(f"{dfpt_dir}: {len(q)} q-points in the dyn files, the grid {n} has {int(np.prod(n))}")
        if np.abs(q * n - np.round(q * n)).max() > 1e-5:
            raise ValueError(f"{dfpt_dir}: q-points off the {n.tolist()} grid in the structure's reciprocal basis")
    return q, np.sort(np.array(fs), axis=1)


def _check_frame(dyn: Path, prim, alat: float) -> None:
    """The dyn file's atoms (Cartesian, alat units, after the species lines) are the structure's, same order
    and axes (Å, within 1e-4 modulo lattice vectors); otherwise ValueError."""
    lines = Path(dyn).read_text().splitlines()
    ntyp, nat = (int(x) for x in lines[2].split()[:2])
    k = 3 + (4 if lines[3].strip().startswith("Basis") else 0) + ntyp
    tau = np.array([[float(x) for x in lines[k + i].split()[2:5]] for i in range(nat)]) * alat
    frac = np.linalg.solve(np.asarray(prim.cell).T, (tau - np.asarray(prim.positions)).T).T
    if nat != prim.n_atoms or np.abs(frac - np.round(frac)).max() > 1e-4:
        raise ValueError(f"{dyn}: atoms differ from the structure's (order, positions or axes)")


def mesh_frequencies(dfpt_dir: Path, q_mesh) -> np.ndarray | None:
    """(nq, 3n) THz ascending: DFPT interpolated to ``q_mesh`` (reduced, (nq, 3)) by QE's own matdyn.x from the
    q2r force constants ``dfpt_dir/<prefix>.fc`` (asr crystal, its dipole sum and Z*/ε∞), or None without
    matdyn.x on PATH or a .fc file. Γ is run on its own (matdyn then applies no non-analytic term, as phonjax's
    thermal mesh without a q direction); every other q in one call."""
    import shutil
    import subprocess
    import tempfile

    from phonjax.dataset.qe_io import write_matdyn_input
    from phonjax.io.qe import parse_matdyn_freq

    exe, fcs = shutil.which("matdyn.x"), sorted(Path(dfpt_dir).glob("*.fc"))
    if exe is None or len(fcs) != 1:
        return None
    q = np.asarray(q_mesh, dtype=np.float64).reshape(-1, 3)
    gamma = np.all(np.abs(q - np.round(q)) < 1e-12, axis=1)
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copyfile(fcs[0], Path(tmp) / "dfpt.fc")
        parts = []
        for sel in (gamma, ~gamma):
            if not sel.any():
                continue
            (Path(tmp) / "matdyn.in").write_text(write_matdyn_input(q[sel], flfrc="dfpt.fc", flfrq="mesh.freq",
                                                                    asr="crystal"))
            with open(Path(tmp) / "matdyn.in") as fin:
                subprocess.run([exe], stdin=fin, cwd=tmp, check=True, capture_output=True)
            _, f = parse_matdyn_freq((Path(tmp) / "mesh.freq").read_text())
            if len(f) != int(sel.sum()):
                raise ValueError(f"matdyn returned {len(f)} q-points for {int(sel.sum())}")
            parts.append((sel, f))
        out = np.zeros((len(q), parts[0][1].shape[1]))
        for sel, f in parts:
            out[sel] = f
    return np.sort(out, axis=1)
