"""Force-constant-aware loss: Hessian-vector products against reference home-cell force-constant rows.

Reference: force constants of a supercell, rows only for home-cell atoms (phonjax convention
``fc[i, j, a, b] = ∂²E/∂u_ia ∂u_jb`` in eV/Å², shape (n_rows, n_super, 3, 3), ``rows`` = supercell
indices of those atoms). For a direction ``v`` supported on the row atoms, (n_rows, 3), the Hessian
symmetry gives

    (H V)[j, b] = Σ_{i,a} v[i, a] fc[i, j, a, b],   V = v scattered onto the rows of an (n_super, 3) zero array,

and ``H V`` is one jvp-of-grad of the model energy (the phonon engine's HVP), so the loss costs
``n_vectors`` HVPs per step and never forms the Hessian. With ``n_vectors = 0`` all 3·n_rows unit
directions are used, i.e. the loss is the mean-squared error of the full home-cell rows (PFT-style).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np


class FcReferenceError(ValueError):
    """The reference force constants cannot be read or do not match their supercell."""


@dataclass(frozen=True, eq=False)
class FcReference:
    """Supercell (numbers (n,), positions (n, 3) Å, cell (3, 3) Å) and its reference rows."""

    numbers: np.ndarray
    positions: np.ndarray
    cell: np.ndarray
    rows: np.ndarray          # (n_rows,) supercell indices
    fc: np.ndarray            # (n_rows, n_super, 3, 3) eV/Å²
    source: str = ""

    def __post_init__(self):
        n = len(self.numbers)
        if self.fc.shape != (len(self.rows), n, 3, 3):
            raise FcReferenceError(f"{self.source}: fc shape {self.fc.shape} does not match "
                                   f"{len(self.rows)} rows × {n} atoms")
        if not np.all(np.isfinite(self.fc)):
            raise FcReferenceError(f"{self.source}: non-finite force constants")


def fc_reference_from_phonopy(phonon, source: str = "") -> FcReference:
    """From a phonopy ``Phonopy`` object with force constants (produced from FORCE_SETS if needed)."""
    if phonon.force_constants is None:
        if phonon.dataset is None:
            raise FcReferenceError(f"{source}: neither force constants nor displacement dataset")
        phonon.produce_force_constants()
    fc = np.asarray(phonon.force_constants, dtype=np.float64)
    sc = phonon.supercell
    p2s = np.asarray(phonon.primitive.p2s_map)
    if fc.shape[0] == fc.shape[1]:
        fc = fc[p2s]
    return FcReference(np.asarray(sc.numbers), np.asarray(sc.positions, np.float64),
                       np.asarray(sc.cell, np.float64), p2s, fc, source)


def load_fc_reference(path: str | Path, *, force_sets: str | Path | None = None,
                      force_constants: str | Path | None = None,
                      supercell_matrix=None) -> FcReference:
    """Reference force constants via phonopy.

    ``path`` is either a phonopy yaml (``phonopy.yaml``/``phonopy_params.yaml`` holding force constants
    or a displacement dataset with forces), or a unit-cell structure file (POSCAR) together with
    ``supercell_matrix`` (3 ints or 3×3) and ``force_sets`` (phonopy FORCE_SETS, e.g. from
    ``phonjax.dataset`` finite displacements) or ``force_constants``.
    """
    import phonopy
    path = Path(path)
    if not path.is_file():
        raise FcReferenceError(f"force-constant reference not found: {path}")
    kw = {}
    for name, f in (("force_sets_filename", force_sets), ("force_constants_filename", force_constants)):
        if f:
            if not Path(f).is_file():
                raise FcReferenceError(f"force-constant reference not found: {f}")
            kw[name] = str(f)
    is_yaml = path.suffix in (".yaml", ".yml")
    if not is_yaml:
        if supercell_matrix is None or not kw:
            raise FcReferenceError(f"{path}: a structure file needs supercell_matrix and force_sets or "
                                   "force_constants")
        kw["unitcell_filename"] = str(path)
        kw["supercell_matrix"] = supercell_matrix
        kw["primitive_matrix"] = "P"  # the cell as given (phonopy 4 reads None as "auto", a basis of its choosing)
    try:
        if is_yaml:
            ph = phonopy.load(str(path), produce_fc=True, symmetrize_fc=False, log_level=0, **kw)
        else:
            ph = phonopy.load(produce_fc=True, symmetrize_fc=False, log_level=0, **kw)
    except Exception as e:  # noqa: BLE001 - phonopy raises many types
        raise FcReferenceError(f"{path}: cannot load with phonopy ({type(e).__name__}: {e})") from None
    return fc_reference_from_phonopy(ph, str(path))


def unit_directions(n_rows: int) -> np.ndarray:
    """All 3·n_rows unit directions, (3·n_rows, n_rows, 3)."""
    return np.eye(3 * n_rows).reshape(3 * n_rows, n_rows, 3)


def random_directions(key, n_vectors: int, n_rows: int) -> jnp.ndarray:
    """Unit-norm Gaussian directions (n_vectors, n_rows, 3) on the home-cell rows."""
    v = jax.random.normal(key, (n_vectors, n_rows, 3), dtype=jnp.float64)
    return v / jnp.linalg.norm(v.reshape(n_vectors, -1), axis=1)[:, None, None]


def hvp_on_rows(energy_of_positions: Callable, positions, rows, directions) -> jnp.ndarray:
    """H·V for each direction (n_vec, n_rows, 3) scattered onto ``rows``: (n_vec, n_super, 3) eV/Å²·Å.

    ``energy_of_positions(positions (n, 3)) -> scalar eV``; one jvp-of-grad per direction (vmapped).
    """
    rows = jnp.asarray(rows)
    grad = jax.grad(energy_of_positions)

    def one(v):
        full = jnp.zeros_like(positions).at[rows].set(v.astype(positions.dtype))
        return jax.jvp(grad, (positions,), (full,))[1]

    return jax.vmap(one)(directions)


def reference_hvp(fc, directions) -> jnp.ndarray:
    """Σ_{i,a} v[i, a] fc[i, j, a, b] → (n_vec, n_super, 3)."""
    return jnp.einsum("kia,ijab->kjb", directions, fc)


def fc_loss(energy_of_positions: Callable, positions, rows, fc, directions) -> jnp.ndarray:
    """Mean-squared HVP error (eV²/Å⁴ per component) over directions, atoms and components."""
    pred = hvp_on_rows(energy_of_positions, positions, rows, directions)
    return jnp.mean((pred - reference_hvp(fc, directions)) ** 2)
