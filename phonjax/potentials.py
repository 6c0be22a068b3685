"""Analytic JAX pair potentials on explicit periodic images (test and benchmark potentials).

    E = ½ Σ_{i, j, T ≠ 0 if i = j} φ_{Z_i Z_j}(|r_j + T − r_i|) · s(|r_j + T − r_i| / r_c)

with φ_ab(r) = A_ab exp(−r/ρ_ab) + D_ab / r¹² − C_ab / r⁶ (Born–Mayer, Buckingham and Lennard-Jones are special
cases) and the C² switch s(x) = (1 − x²)³ for x < 1, else 0. Units: eV, Å; T runs over lattice vectors
n @ cell (rows of ``cell`` are lattice vectors).

A :class:`PairPotential` serves both energy interfaces of :func:`phonjax.force_constants`:

* ``pot(positions, cell, numbers) -> eV`` (plain callable): images n ∈ [−k, k]³; k from the cell when the cell is
  concrete (numpy), else ``image_range`` (must be set to trace over the cell);
* ``pot.bind(crystal) -> energy(positions, cell)``: a neighbour list is built once for that geometry (linear
  cost in the number of atoms) and the returned function is a :class:`jax.tree_util.Partial` (a pytree), so a second structure of the same shape
  reuses the compiled engine kernels.

:class:`PotentialCalculator` wraps a potential as an ASE calculator (energy, forces, stress = 0 not provided).
"""
from __future__ import annotations

from dataclasses import dataclass, field
import itertools

import jax
import jax.numpy as jnp
import numpy as np
from ase.calculators.calculator import Calculator, all_changes
from ase.data import atomic_numbers

__all__ = ["PairPotential", "PotentialCalculator", "rock_salt_potential", "lennard_jones"]


class PotentialError(ValueError):
    """Bad potential parameters or a structure the potential cannot handle."""


def _z(s) -> int:
    if isinstance(s, str):
        if s not in atomic_numbers:
            raise PotentialError(f"unknown element {s!r}")
        return atomic_numbers[s]
    return int(s)


def _switch(x):
    return jnp.where(x < 1.0, (1.0 - jnp.minimum(x, 1.0) ** 2) ** 3, 0.0)


def _pair_energy(positions, cell, numbers, shifts, lookup, A, rho, C, D, cutoff):
    """Energy (eV) of atoms at ``positions`` (N, 3) with images ``shifts`` (S, 3) integer-valued float."""
    t = lookup[numbers]  # (N,) type index
    if isinstance(t, np.ndarray) and np.any(t < 0):
        raise PotentialError("the potential has no parameters for some species in the structure")
    T = shifts @ cell  # (S, 3)
    v = positions[None, :, None, :] + T[None, None, :, :] - positions[:, None, None, :]  # (N, N, S, 3)
    n = positions.shape[0]
    zero = np.all(np.asarray(shifts) == 0, axis=1) if isinstance(shifts, np.ndarray) else jnp.all(shifts == 0, axis=1)
    self_pair = jnp.eye(n, dtype=bool)[:, :, None] & zero[None, None, :]
    r2 = jnp.sum(v * v, axis=-1)
    inside = (~self_pair) & (r2 < cutoff ** 2)
    r2s = jnp.where(inside, r2, cutoff ** 2)
    r = jnp.sqrt(r2s)
    ti, tj = t[:, None], t[None, :]
    a, p, c, d = A[ti, tj][..., None], rho[ti, tj][..., None], C[ti, tj][..., None], D[ti, tj][..., None]
    inv6 = 1.0 / (r2s * r2s * r2s)
    phi = a * jnp.exp(-r / p) + d * inv6 * inv6 - c * inv6
    e = jnp.where(inside, phi * _switch(r / cutoff), 0.0)
    return 0.5 * jnp.sum(e)


def _bound_energy(senders, receivers, shifts, mask, numbers, lookup, A, rho, C, D, cutoff, positions, cell):
    """Energy over an explicit padded pair list (both orders of every pair, hence the ½)."""
    t = lookup[numbers]
    v = positions[senders] - positions[receivers] + shifts @ cell
    r2 = jnp.sum(v * v, axis=-1)
    inside = mask & (r2 < cutoff ** 2)
    r2s = jnp.where(inside, r2, cutoff ** 2)
    r = jnp.sqrt(r2s)
    ti, tj = t[receivers], t[senders]
    inv6 = 1.0 / (r2s * r2s * r2s)
    phi = A[ti, tj] * jnp.exp(-r / rho[ti, tj]) + D[ti, tj] * inv6 * inv6 - C[ti, tj] * inv6
    return 0.5 * jnp.sum(jnp.where(inside, phi * _switch(r / cutoff), 0.0))


#: pair lists are padded to a multiple of this, so rattled copies of a structure share compiled kernels
PAIR_BUCKET = 512
#: pairs up to cutoff + SKIN (Å) are listed, so small displacements never miss a pair
SKIN = 1.0


def _neighbor_pairs(cr, cutoff: float):
    """(i, j, S): all ordered pairs with |r_j + S @ cell − r_i| < cutoff (vesin, else ASE)."""
    try:
        from vesin import NeighborList
        i, j, S = NeighborList(cutoff=cutoff, full_list=True).compute(
            points=cr.positions, box=cr.cell, periodic=True, quantities="ijS")
        return np.asarray(i, np.int64), np.asarray(j, np.int64), np.asarray(S, np.int64)
    except ImportError:  # pragma: no cover
        from ase.neighborlist import primitive_neighbor_list
        return primitive_neighbor_list("ijS", (True, True, True), cr.cell, cr.positions, cutoff,
                                       self_interaction=False)


def _image_range(cell: np.ndarray, cutoff: float, margin: float = 1.0) -> np.ndarray:
    """Images k (3,) per direction so that every pair of atoms inside the cell within ``cutoff`` is found."""
    rec = np.linalg.inv(cell)  # columns b_j, a_i·b_j = δ_ij; width_j = 1/|b_j|
    width = 1.0 / np.linalg.norm(rec, axis=0)
    return np.ceil((cutoff + margin) / width).astype(int) + 1


def _shift_grid(k) -> np.ndarray:
    k = np.broadcast_to(np.asarray(k, dtype=int), (3,))
    return np.array(list(itertools.product(*[range(-x, x + 1) for x in k])), dtype=np.float64)


@dataclass(frozen=True, eq=False)
class PairPotential:
    """Species-aware pair potential (see module docstring).

    species: atomic numbers with parameters; A, rho, C, D: (n_species, n_species) symmetric tables (eV, Å,
    eV·Å⁶, eV·Å¹²); cutoff: r_c (Å); image_range: images per direction used when the cell is traced.
    """

    species: tuple
    A: np.ndarray
    rho: np.ndarray
    C: np.ndarray
    D: np.ndarray
    cutoff: float = 6.0
    image_range: int | None = None
    _lookup: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]

    def __post_init__(self):
        sp = tuple(_z(s) for s in self.species)
        object.__setattr__(self, "species", sp)
        n = len(sp)
        for name in ("A", "rho", "C", "D"):
            t = np.array(getattr(self, name), dtype=np.float64)
            if t.shape != (n, n) or not np.allclose(t, t.T):
                raise PotentialError(f"{name} must be a symmetric ({n}, {n}) table")
            object.__setattr__(self, name, t)
        if np.any(self.rho <= 0):
            raise PotentialError("rho must be positive")
        if not self.cutoff > 0:
            raise PotentialError("cutoff must be positive")
        lookup = np.full(119, -1, dtype=np.int64)
        lookup[list(sp)] = np.arange(n)
        object.__setattr__(self, "_lookup", lookup)

    @classmethod
    def from_pairs(cls, pairs: dict, *, cutoff: float = 6.0, image_range: int | None = None) -> "PairPotential":
        """pairs: {("Na", "Cl"): {"A": .., "rho": .., "C": .., "D": ..}, ...} (missing keys 0; rho default 1)."""
        species = sorted({_z(s) for key in pairs for s in key})
        idx = {z: k for k, z in enumerate(species)}
        n = len(species)
        tabs = {k: np.zeros((n, n)) for k in ("A", "C", "D")}
        tabs["rho"] = np.ones((n, n))
        for (s1, s2), par in pairs.items():
            unknown = set(par) - {"A", "rho", "C", "D"}
            if unknown:
                raise PotentialError(f"unknown pair parameters {sorted(unknown)}")
            i, j = idx[_z(s1)], idx[_z(s2)]
            for k, val in par.items():
                tabs[k][i, j] = tabs[k][j, i] = float(val)
        return cls(tuple(species), tabs["A"], tabs["rho"], tabs["C"], tabs["D"], cutoff, image_range)

    def _tables(self, numbers):
        nums = np.asarray(numbers) if not isinstance(numbers, jax.core.Tracer) else None
        if nums is not None:
            missing = sorted(set(nums.tolist()) - set(self.species))
            if missing:
                raise PotentialError(f"no pair parameters for atomic numbers {missing}")
        return (jnp.asarray(self._lookup), jnp.asarray(self.A), jnp.asarray(self.rho), jnp.asarray(self.C),
                jnp.asarray(self.D), jnp.asarray(self.cutoff))

    def __call__(self, positions, cell, numbers):
        """Energy (eV). positions (N, 3) Å, cell (3, 3) Å, numbers (N,) atomic numbers."""
        if isinstance(cell, jax.core.Tracer):
            if self.image_range is None:
                raise PotentialError("image_range must be set to differentiate/trace through the cell")
            k = self.image_range
        else:
            k = _image_range(np.asarray(cell, dtype=np.float64), self.cutoff)
            if self.image_range is not None:
                k = np.maximum(k, self.image_range)
        shifts = _shift_grid(k)
        return _pair_energy(positions, cell, numbers, shifts, *self._tables(numbers))

    def bind(self, crystal):
        """energy(positions (N, 3), cell (3, 3)) -> eV for this crystal, as a jax Partial over a neighbour list.

        Pairs (i, j, cell shift) within cutoff + SKIN of this geometry are listed once (ASE's neighbour list) and
        padded to a multiple of PAIR_BUCKET; the energy is linear in the number of atoms."""
        from phonjax.structure import Crystal

        cr = Crystal.coerce(crystal)
        self._tables(cr.numbers)
        i, j, S = _neighbor_pairs(cr, self.cutoff + SKIN)
        n = len(i)
        cap = max(PAIR_BUCKET, -(-n // PAIR_BUCKET) * PAIR_BUCKET)
        pad = cap - n
        senders = np.concatenate([j, np.zeros(pad, dtype=j.dtype)])
        receivers = np.concatenate([i, np.zeros(pad, dtype=i.dtype)])
        shifts = np.concatenate([S.astype(np.float64), np.zeros((pad, 3))])
        mask = np.concatenate([np.ones(n, bool), np.zeros(pad, bool)])
        return jax.tree_util.Partial(_bound_energy, jnp.asarray(senders), jnp.asarray(receivers),
                                     jnp.asarray(shifts), jnp.asarray(mask), jnp.asarray(cr.numbers),
                                     *self._tables(cr.numbers))


def rock_salt_potential(a: float = 5.64, cation: str = "Na", anion: str = "Cl", *, cutoff: float | None = None,
                        image_range: int | None = None) -> PairPotential:
    """A Coulomb-free Lennard-Jones model of a rock-salt crystal with lattice constant ``a`` (Å): the
    cation–anion well sits at a/2 and the cation–cation / anion–anion wells (different depths) at a/√2, so the
    ideal rock salt at ``a`` is close to equilibrium and dynamically stable. Test potential, not physics."""
    r1, r2 = a / 2, a / np.sqrt(2)
    s = 2 ** (1 / 6)

    def lj(eps, rmin):
        sig = rmin / s
        return {"D": 4 * eps * sig ** 12, "C": 4 * eps * sig ** 6}

    pairs = {(cation, anion): lj(0.25, r1), (cation, cation): lj(0.04, r2), (anion, anion): lj(0.07, r2)}
    return PairPotential.from_pairs(pairs, cutoff=1.25 * a if cutoff is None else cutoff, image_range=image_range)


def lennard_jones(species, *, epsilon: float = 0.01, sigma: float = 3.4, cutoff: float = 8.0,
                  image_range: int | None = None) -> PairPotential:
    """One Lennard-Jones 4ε[(σ/r)¹² − (σ/r)⁶] for every pair of ``species``."""
    pairs = {(a, b): {"D": 4 * epsilon * sigma ** 12, "C": 4 * epsilon * sigma ** 6}
             for a, b in itertools.combinations_with_replacement(species, 2)}
    return PairPotential.from_pairs(pairs, cutoff=cutoff, image_range=image_range)


class PotentialCalculator(Calculator):
    """ASE calculator over an energy function ``fn(positions, cell, numbers)`` (e.g. a PairPotential):
    energy (eV) and forces (eV/Å) by jax.grad, float64."""

    implemented_properties = ["energy", "free_energy", "forces"]

    def __init__(self, energy_fn, **kwargs):
        super().__init__(**kwargs)
        self._fn = energy_fn

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        pos = jnp.asarray(self.atoms.positions, dtype=jnp.float64)
        cell = np.asarray(self.atoms.cell.array, dtype=np.float64)
        nums = np.asarray(self.atoms.numbers)
        e, g = jax.value_and_grad(lambda x: self._fn(x, cell, nums))(pos)
        self.results = {"energy": float(e), "free_energy": float(e), "forces": -np.asarray(g)}
