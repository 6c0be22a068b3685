"""Reusable equivariance checks for functions of a crystal (for tests of any phonjax model or engine).

``assert_equivariant(fn, crystal)`` applies random rotations (proper and improper), a translation and a
permutation of the atoms, and checks that ``fn`` transforms as declared:

    fn(crystal) -> dict of name -> array, with kinds given by ``kinds``:
      "scalar"   invariant (energy)
      "vector"   per-atom vectors (n, 3): rotate as v R^T, permute with the atoms (forces)
      "tensor"   (3, 3) rank-2 Cartesian tensor: R T R^T (stress)
      "hessian"  (n, 3, n, 3): rotates on both Cartesian indices, permutes on both atom indices
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from scipy.spatial.transform import Rotation

from phonjax.structure import Crystal


def _transform(crystal: Crystal, R: np.ndarray, t: np.ndarray, perm: np.ndarray) -> Crystal:
    pos = crystal.positions @ R.T + t
    return Crystal(crystal.cell @ R.T, pos[perm], crystal.numbers[perm], crystal.masses[perm])


def _expected(kind: str, value: np.ndarray, R: np.ndarray, perm: np.ndarray) -> np.ndarray:
    v = np.asarray(value)
    if kind == "scalar":
        return v
    if kind == "vector":
        return (v @ R.T)[perm]
    if kind == "tensor":
        return R @ v @ R.T
    if kind == "hessian":
        h = np.einsum("ab,iajc,dc->ibjd", R, v, R)
        return h[perm][:, :, perm]
    raise ValueError(f"unknown kind {kind!r}")


def assert_equivariant(fn: Callable, crystal, kinds: dict, *, n_rotations: int = 2, improper: bool = True,
                       seed: int = 0, atol: float = 1e-9, rtol: float = 1e-9) -> None:
    """Raise AssertionError if ``fn`` is not equivariant under rotations/reflections, translations and atom
    permutations. ``kinds`` maps each output name to "scalar" | "vector" | "tensor" | "hessian"."""
    crystal = Crystal.coerce(crystal)
    rng = np.random.default_rng(seed)
    ref = fn(crystal)
    n = crystal.n_atoms
    cases = []
    for k in range(n_rotations):
        R = Rotation.random(random_state=int(rng.integers(1 << 31))).as_matrix()
        if improper and k % 2 == 1:
            R = -R
        cases.append((R, rng.normal(0, 2.0, 3), rng.permutation(n)))
    cases.append((np.eye(3), rng.normal(0, 5.0, 3), np.arange(n)))  # pure translation
    for R, t, perm in cases:
        out = fn(_transform(crystal, R, t, perm))
        for name, kind in kinds.items():
            exp = _expected(kind, ref[name], R, perm)
            got = np.asarray(out[name])
            if not np.allclose(got, exp, atol=atol, rtol=rtol):
                err = float(np.max(np.abs(got - exp)))
                raise AssertionError(f"{name} ({kind}) not equivariant: max |Δ| = {err:.3e} "
                                     f"(det R = {np.linalg.det(R):+.0f})")
