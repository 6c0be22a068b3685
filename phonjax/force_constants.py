"""Force constants by automatic differentiation (seed Eq. 1), symmetrisation (Eq. 2) and real-space ASR.

Only the 3·n_prim rows of the home-cell atoms are computed:

    fc[i, j, a, b] = ∂²E / ∂u_ia ∂u_jb   (eV/Å², shape (n_prim, n_super, 3, 3); home atom i = supercell atom i)

Each row block is a Hessian-vector product H·v with v the unit displacement of home atom i along a:
forward-over-reverse (``jax.jvp`` of ``jax.grad``, mode "jvp"; or ``jax.linearize`` of the gradient once and
the tangent map vmapped, mode "linearize"), vmapped over all directions, or over chunks of ``chunk_size``
directions with ``lax.map`` when memory is short. Mode "hessian" forms the full ``jax.hessian`` (small cells).
With ``symmetry=True`` only the site-symmetry-reduced products of :mod:`phonjax.symmetry` are computed.

Energy interfaces: an object with ``bind(crystal) -> energy(positions, cell)`` (the NequIP model) or a plain
callable ``energy_fn(positions, cell, numbers)``. The jitted kernels take the energy as a *pytree argument*:
when ``bind`` returns a :class:`jax.tree_util.Partial` (arrays as leaves), and for plain callables, a second
structure of the same shape reuses the compiled kernel (no recompilation).

Symmetrisation (Eq. 2): H_kalb(R) ← ½[H_kalb(R) + H_lbka(−R)]. ASR (translational invariance Σ_s fc[i,s] = 0):
"simple" (QE: the self term absorbs the row sum) or "phonopy" (row sums removed uniformly over the row,
alternated with Eq. 2, phonopy's compact-fc symmetrisation). Violations are reported in :class:`FcReport`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
import time
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from phonjax.structure import Crystal, Supercell, lattice_index, make_supercell, supercell_matrix

__all__ = ["ForceConstants", "FcReport", "ForceConstantsError", "force_constants", "force_constants_batch",
           "hvp_directions", "symmetrize_fc", "apply_asr", "asr_violation", "permutation_violation",
           "permutation_partner"]

MODES = ("jvp", "linearize", "hessian")
ASR_MODES = ("phonopy", "simple", "none")


class ForceConstantsError(ValueError):
    """Bad input for the force-constant engine (mode, shapes, supercell)."""


# --------------------------------------------------------------------------------------------------------
# result
@dataclass(frozen=True)
class FcReport:
    """Diagnostics (eV/Å²): max |Σ_s fc[i,s,a,b]| (asr) and max |fc − Eq.2 partner| (perm) before/after."""

    asr_before: float
    asr_after: float
    perm_before: float
    perm_after: float
    asr: str = "none"
    symmetrized: bool = False
    mode: str = ""
    n_hvp: int = 0
    wall_time_s: float = 0.0


@dataclass(frozen=True, eq=False)
class ForceConstants:
    """Home-cell force constants of a supercell and the phonon methods on them.

    supercell: :class:`~phonjax.structure.Supercell`.  fc: (n_prim, n_super, 3, 3) eV/Å², rows = home-cell atoms
    (supercell index i for primitive atom i).  born: Born charges/ε∞ (:class:`phonjax.born.Born`) or None.
    report: diagnostics of how fc was made.  qspace_asr: default of the q-space ASR (Eq. 14) in
    :meth:`frequencies` (False for force constants read from phonopy, so phonopy's numbers are reproduced).
    """

    supercell: Supercell
    fc: np.ndarray
    born: object = None
    report: FcReport | None = None
    qspace_asr: bool = True
    _cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        fc = np.array(self.fc, dtype=np.float64)
        n, ns = self.supercell.primitive.n_atoms, self.supercell.crystal.n_atoms
        if fc.shape != (n, ns, 3, 3):
            raise ForceConstantsError(f"fc has shape {fc.shape}, expected {(n, ns, 3, 3)}")
        if not np.all(np.isfinite(fc)):
            raise ForceConstantsError("force constants contain non-finite values")
        fc.setflags(write=False)
        object.__setattr__(self, "fc", fc)
        if self.born is not None and self.born.n_atoms != n:
            raise ForceConstantsError(f"Born charges for {self.born.n_atoms} atoms, primitive cell has {n}")

    @property
    def primitive(self) -> Crystal:
        return self.supercell.primitive

    @property
    def n_branches(self) -> int:
        return 3 * self.primitive.n_atoms

    def with_born(self, born) -> "ForceConstants":
        return ForceConstants(self.supercell, self.fc, born, self.report, self.qspace_asr)

    # --- phonons (dynmat.py) ----------------------------------------------------------------------------
    def frequencies(self, qpoints, *, lr: str = "auto", born=None, q_direction=None, ewald_lambda=None,
                    leak_region=None, lo_projection: bool = False, asr: bool | None = None,
                    return_eigenvectors: bool = False, unit: str = "THz"):
        """Frequencies (nq, 3·n_prim) at reduced ``qpoints`` (nq, 3), ascending, imaginary as negative.

        lr: "auto" (gonze when Born data is known, else none) or a mode of :mod:`phonjax.longrange`.
        q_direction: Cartesian (3,) or per-q (nq, 3) direction of approach used at q = Γ (non-analytic term).
        asr: q-space ASR (Eq. 14); None → ``self.qspace_asr``.  unit: "THz", "cm-1" or "meV".
        With ``return_eigenvectors`` returns (freqs, eigvecs (nq, 3n, 3n), columns = modes, phonopy's layout).
        """
        from phonjax.dynmat import phonons
        return phonons(self, qpoints, lr=lr, born=born, q_direction=q_direction, ewald_lambda=ewald_lambda,
                       leak_region=leak_region, lo_projection=lo_projection, asr=asr,
                       return_eigenvectors=return_eigenvectors, unit=unit)

    def dynamical_matrices(self, qpoints, *, lr: str = "auto", born=None, q_direction=None, ewald_lambda=None,
                           leak_region=None, lo_projection: bool = False, asr: bool | None = None) -> np.ndarray:
        """Mass-weighted Hermitian D(q), (nq, 3n, 3n) complex, eV/Å²/amu."""
        from phonjax.dynmat import dynamical_matrices
        return dynamical_matrices(self, qpoints, lr=lr, born=born, q_direction=q_direction,
                                  ewald_lambda=ewald_lambda, leak_region=leak_region,
                                  lo_projection=lo_projection, asr=asr)

    def band_structure(self, path=None, *, npoints: int = 51, density: float | None = None, labels=None,
                       lr: str = "auto", born=None, ewald_lambda=None, leak_region=None,
                       lo_projection: bool = False, asr: bool | None = None, with_eigenvectors: bool = False):
        """Dispersion along ``path`` (None: automatic high-symmetry path): :class:`phonjax.bands.BandStructure`.
        See :func:`phonjax.bands.band_structure`."""
        from phonjax.bands import band_structure
        return band_structure(self, path, npoints=npoints, density=density, labels=labels, lr=lr, born=born,
                              ewald_lambda=ewald_lambda, leak_region=leak_region, lo_projection=lo_projection,
                              asr=asr, with_eigenvectors=with_eigenvectors)

    def dos(self, mesh=(16, 16, 16), *, sigma: float | None = None, lr: str = "auto", born=None, **kw):
        """Phonon DOS on a Γ-centred mesh: :func:`phonjax.bands.phonon_dos`."""
        from phonjax.bands import phonon_dos
        return phonon_dos(self, mesh, sigma=sigma, lr=lr, born=born, **kw)

    # --- interoperability (io/phonopy.py) ----------------------------------------------------------------
    def to_phonopy(self):
        """A ``phonopy.Phonopy`` with these force constants (and NAC parameters when born is known)."""
        from phonjax.io.phonopy import to_phonopy
        return to_phonopy(self)

    def write_hdf5(self, path) -> None:
        """phonopy's ``force_constants.hdf5`` (compact, phonopy's supercell atom order)."""
        from phonjax.io.phonopy import write_force_constants_hdf5
        write_force_constants_hdf5(self, path)


# --------------------------------------------------------------------------------------------------------
# symmetrisation and ASR
def permutation_partner(supercell: Supercell) -> np.ndarray:
    """(n_prim, n_super) index s' such that fc[i, s] pairs with fc[s2p[s], s'] under Eq. 2 (s' = atom i in
    the lattice cell −R_s, reduced into the supercell)."""
    n = supercell.primitive.n_atoms
    minus = lattice_index(supercell, -supercell.lattice)  # (n_cells,)
    return minus[supercell.s2l][None, :] * n + np.arange(n)[:, None]


def _partner(fc: np.ndarray, supercell: Supercell) -> np.ndarray:
    part = permutation_partner(supercell)  # (n, ns)
    j = supercell.s2p[None, :].repeat(fc.shape[0], 0)
    return np.swapaxes(fc[j, part], -1, -2)  # fc[j, s', b, a]


def asr_violation(fc) -> float:
    """max |Σ_s fc[i, s, a, b]| (eV/Å²)."""
    return float(np.abs(np.asarray(fc).sum(axis=1)).max())


def permutation_violation(fc, supercell: Supercell) -> float:
    """max |fc[i,s,a,b] − fc[j,s',b,a]| (eV/Å²), the Eq. 2 asymmetry."""
    fc = np.asarray(fc)
    return float(np.abs(fc - _partner(fc, supercell)).max())


def symmetrize_fc(fc, supercell: Supercell) -> np.ndarray:
    """Eq. 2: ½[fc[i,s,a,b] + fc[j,s',b,a]] (index permutation symmetry)."""
    fc = np.asarray(fc, dtype=np.float64)
    return 0.5 * (fc + _partner(fc, supercell))


def apply_asr(fc, supercell: Supercell, kind: str = "phonopy", *, iterations: int = 3) -> np.ndarray:
    """Translational invariance of the home-cell rows.

    "simple" (QE): fc[i, i, a, b] −= Σ_s fc[i, s, a, b].  "phonopy": row sums removed uniformly from every
    element of the row, alternated ``iterations`` times with Eq. 2, ending on the row-sum step (row sums are
    then zero to rounding; Eq. 2 holds to the size of the last correction).  "none": unchanged.
    """
    fc = np.array(fc, dtype=np.float64)
    if kind == "none":
        return fc
    if kind == "simple":
        idx = np.arange(fc.shape[0])
        fc[idx, idx] -= fc.sum(axis=1)
        return fc
    if kind == "phonopy":
        ns = fc.shape[1]
        for k in range(iterations):
            fc -= fc.sum(axis=1, keepdims=True) / ns
            if k < iterations - 1:
                fc = symmetrize_fc(fc, supercell)
        return fc
    raise ForceConstantsError(f"unknown ASR kind {kind!r}; choose one of {', '.join(ASR_MODES)}")


def finalize_fc(fc, supercell: Supercell, *, symmetrize: bool, asr: str | None, mode: str = "", n_hvp: int = 0,
                wall_time_s: float = 0.0) -> tuple[np.ndarray, FcReport]:
    """Apply Eq. 2 and ASR and report the violations before and after."""
    asr = "none" if asr is None else asr
    if asr not in ASR_MODES:
        raise ForceConstantsError(f"unknown ASR kind {asr!r}; choose one of {', '.join(ASR_MODES)}")
    fc = np.asarray(fc, dtype=np.float64)
    a0, p0 = asr_violation(fc), permutation_violation(fc, supercell)
    out = symmetrize_fc(fc, supercell) if symmetrize else fc
    out = apply_asr(out, supercell, asr)
    rep = FcReport(a0, asr_violation(out), p0, permutation_violation(out, supercell), asr, bool(symmetrize), mode,
                   int(n_hvp), float(wall_time_s))
    return out, rep


# --------------------------------------------------------------------------------------------------------
# energy adapters and kernels
@dataclass(frozen=True)
class _PlainAdapter:
    """energy(positions, cell) from energy_fn(positions, cell, numbers); hashable by the wrapped function so
    the jit cache is shared between calls with the same energy_fn."""

    fn: Callable

    def __call__(self, numbers, positions, cell):
        return self.fn(positions, cell, numbers)


@dataclass(frozen=True)
class _ModelAdapter:
    """energy(params, graph, positions, cell) of a phonjax NequIP Model with a given (static, hashable) config:
    params and graph become pytree leaves of a Partial, so the compiled kernels are shared by every structure
    of the same padded shape (a closure over params would be re-traced, and its weights constant-folded,
    for every bind)."""

    config: object

    def __call__(self, params, graph, positions, cell):
        from phonjax.models.nequip.model import _energy_single
        return _energy_single(self.config, params, graph, jnp.asarray(positions), jnp.asarray(cell))


def _model_partial(model, e):
    """Partial over a phonjax Model's bound energy (see :class:`_ModelAdapter`), or None when ``model`` is not
    one (other objects with ``bind`` keep their own function)."""
    graph = getattr(e, "graph", None)
    if graph is None or not hasattr(model, "config") or not hasattr(model, "params"):
        return None
    try:
        import phonjax.models.nequip.model as pm
        if not isinstance(model, pm.Model) or not hasattr(pm, "_energy_single"):
            return None
        hash(model.config)
    except Exception:
        return None
    return jax.tree_util.Partial(_ModelAdapter(model.config), model.params, graph)


def _energy_of(model_or_energy_fn, crystal: Crystal, edge_chunk: int | None = None):
    """A jax Partial ``energy(positions, cell)`` for ``crystal`` (``edge_chunk`` is passed to Model.bind)."""
    if hasattr(model_or_energy_fn, "bind"):
        e = (model_or_energy_fn.bind(crystal) if edge_chunk is None
             else model_or_energy_fn.bind(crystal, edge_chunk=edge_chunk))
        if isinstance(e, jax.tree_util.Partial):
            return e
        if not callable(e):
            raise ForceConstantsError(f"{type(model_or_energy_fn).__name__}.bind() did not return a callable")
        p = _model_partial(model_or_energy_fn, e)  # older phonjax Models whose bind returned a closure
        if p is not None:
            return p
        return jax.tree_util.Partial(e)  # closures: recompiled per bind (cannot be shared)
    if callable(model_or_energy_fn):
        return jax.tree_util.Partial(_PlainAdapter(model_or_energy_fn), jnp.asarray(crystal.numbers))
    raise ForceConstantsError(f"expected a model with bind(crystal) or an energy function, got "
                              f"{type(model_or_energy_fn).__name__}")


def _hvp_map(energy, positions, cell, directions, mode: str, chunk_size: int | None):
    grad = jax.grad(lambda x: energy(x, cell))
    if mode == "linearize":
        _, one = jax.linearize(grad, positions)
    else:
        def one(v):
            return jax.jvp(grad, (positions,), (v,))[1]
    if chunk_size is None:
        return jax.vmap(one)(directions)
    nd = directions.shape[0]
    chunks = directions.reshape(nd // chunk_size, chunk_size, *directions.shape[1:])
    return jax.lax.map(jax.vmap(one), chunks).reshape(directions.shape)


@partial(jax.jit, static_argnames=("mode", "chunk_size"))
def _hvp_kernel(energy, positions, cell, directions, mode: str, chunk_size: int | None):
    """(n_dir, N, 3) Hessian-vector products H·v (eV/Å²·Å per unit v)."""
    return _hvp_map(energy, positions, cell, directions, mode, chunk_size)


@partial(jax.jit, static_argnames=("mode", "chunk_size"))
def _hvp_kernel_batch(energy, positions, cell, directions, mode: str, chunk_size: int | None):
    return jax.vmap(lambda e, p, c: _hvp_map(e, p, c, directions, mode, chunk_size))(energy, positions, cell)


@jax.jit
def _hessian_kernel(energy, positions, cell):
    return jax.hessian(lambda x: energy(x, cell))(positions)


def hvp_directions(supercell: Supercell, plan=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tangent vectors (n_dir, n_super, 3) for the home-cell rows: unit displacements of home atom i along
    x, y, z (plan None), or the directions of a :class:`phonjax.symmetry.RowPlan`. Returns (V, atoms, dirs)."""
    n, ns = supercell.primitive.n_atoms, supercell.crystal.n_atoms
    if plan is None:
        atoms, dirs = np.repeat(np.arange(n), 3), np.tile(np.eye(3), (n, 1))
    else:
        atoms, dirs = np.asarray(plan.atoms), np.asarray(plan.directions, dtype=np.float64)
    V = np.zeros((len(atoms), ns, 3))
    V[np.arange(len(atoms)), atoms] = dirs
    return V, atoms, dirs


def _rows_from_hvps(h: np.ndarray, supercell: Supercell, plan) -> np.ndarray:
    """fc (n, ns, 3, 3) from products h (n_dir, ns, 3) (fc[i, s, a, b] = (H e_ia)[s, b] by H's symmetry)."""
    n, ns = supercell.primitive.n_atoms, supercell.crystal.n_atoms
    if plan is None:
        return h.reshape(n, 3, ns, 3).transpose(0, 2, 1, 3)
    from phonjax.symmetry import rebuild_rows
    return rebuild_rows(plan, h)


def _pad_directions(V: np.ndarray, chunk_size: int | None) -> tuple[np.ndarray, int | None]:
    if chunk_size is None:
        return V, None
    if int(chunk_size) < 1:
        raise ForceConstantsError(f"chunk_size must be a positive integer, got {chunk_size}")
    c = min(int(chunk_size), len(V))
    pad = (-len(V)) % c
    return np.concatenate([V, np.zeros((pad,) + V.shape[1:])]), c


def _check_mode(mode):
    if mode not in MODES:
        raise ForceConstantsError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")


def _as_supercell(atoms, supercell) -> Supercell:
    if isinstance(supercell, Supercell):
        return supercell
    if supercell is None:
        raise ForceConstantsError("a supercell (N, (N1, N2, N3) or a 3x3 matrix) is required")
    return make_supercell(Crystal.coerce(atoms), supercell_matrix(supercell))


def supercell_width(crystal: Crystal) -> float:
    """Smallest distance (Å) between opposite faces of the cell: twice the radius of its inscribed sphere."""
    return float(1.0 / np.linalg.norm(np.linalg.inv(crystal.cell), axis=0).max())


def check_supercell_range(sc: Supercell, r_max: float) -> None:
    """Raise when the supercell does not contain the model's cutoff sphere (width < 2·r_max): an atom would
    then see periodic images of its own displacement, and the force constants alias between images."""
    w = supercell_width(sc.crystal)
    if w < 2.0 * r_max - 1e-9:
        prim_w = supercell_width(sc.primitive)
        n = int(np.ceil(2.0 * r_max / prim_w - 1e-9))
        raise ForceConstantsError(
            f"supercell too small for the model: its width {w:.2f} Å is less than the cutoff sphere's diameter "
            f"2·r_max = {2 * r_max:.2f} Å (use at least {n}x{n}x{n}, or allow_small_supercell=True)")


def force_constants(model_or_energy_fn, atoms, supercell, *, mode: str = "jvp", chunk_size: int | None = None,
                    symmetry: bool = True, symmetrize: bool = True, asr: str | None = "phonopy", born=None,
                    symprec: float = 1e-5, allow_small_supercell: bool = False,
                    edge_chunk: int | None = None) -> ForceConstants:
    """Home-cell force constants of ``supercell`` of ``atoms`` by automatic differentiation.

    model_or_energy_fn: object with ``bind(crystal) -> energy(positions, cell)`` or ``energy_fn(positions, cell,
    numbers)`` (eV).  atoms: primitive cell (Crystal / ase.Atoms).  supercell: N, (N1, N2, N3), a 3×3 integer
    matrix M (supercell cell = M @ cell) or a :class:`Supercell`.  mode: "jvp" | "linearize" | "hessian".
    chunk_size: directions per ``lax.map`` step (None: all vmapped at once).  symmetry: compute only
    site-symmetry-reduced products (spglib) and rebuild the other rows.  symmetrize: Eq. 2.  asr: "phonopy",
    "simple" or None.  born: optional Born data attached to the result.  allow_small_supercell: skip the check
    that a model with ``r_max`` fits its cutoff sphere in the supercell.  edge_chunk: a phonjax Model's edges per
    rematerialised message chunk (0: none; None: automatic by graph size, see ``phonjax.models.nequip.model.auto_edge_chunk``)
    — O(nodes) instead of O(edges) memory in large supercells (on LiF 5³ also 30 % faster on CPU).
    """
    _check_mode(mode)
    sc = _as_supercell(atoms, supercell)
    r_max = getattr(model_or_energy_fn, "r_max", None)
    if r_max is not None and not allow_small_supercell:
        check_supercell_range(sc, float(r_max))
    t0 = time.perf_counter()
    energy = _energy_of(model_or_energy_fn, sc.crystal, edge_chunk)
    pos = jnp.asarray(sc.crystal.positions)
    cell = jnp.asarray(sc.crystal.cell)
    n, ns = sc.primitive.n_atoms, sc.crystal.n_atoms
    if mode == "hessian":
        H = np.asarray(_hessian_kernel(energy, pos, cell))  # (ns, 3, ns, 3)
        raw = H[:n].transpose(0, 2, 1, 3)
        n_hvp = 3 * ns
    else:
        plan = None
        if symmetry:
            from phonjax.symmetry import plan_rows
            plan = plan_rows(sc, symprec=symprec)
        V, _, _ = hvp_directions(sc, plan)
        Vp, c = _pad_directions(V, chunk_size)
        h = np.asarray(_hvp_kernel(energy, pos, cell, jnp.asarray(Vp), mode, c))[:len(V)]
        raw = _rows_from_hvps(h, sc, plan)
        n_hvp = len(V)
    fc, rep = finalize_fc(raw, sc, symmetrize=symmetrize, asr=asr, mode=mode, n_hvp=n_hvp,
                          wall_time_s=time.perf_counter() - t0)
    return ForceConstants(sc, fc, born, rep)


def _stackable(energies) -> bool:
    defs = [jax.tree_util.tree_structure(e) for e in energies]
    if any(d != defs[0] for d in defs):
        return False
    shapes = [[(np.shape(x), np.asarray(x).dtype) for x in jax.tree_util.tree_leaves(e)] for e in energies]
    return all(s == shapes[0] for s in shapes)


def force_constants_batch(model_or_energy_fn, structures: Sequence, supercell, *, mode: str = "jvp",
                          chunk_size: int | None = None, symmetrize: bool = True, asr: str | None = "phonopy",
                          vmap: bool = True) -> list[ForceConstants]:
    """Force constants of many structures. ``supercell``: one spec for all, or a list (one per structure, e.g.
    several supercell sizes). Structures whose supercells have the same shape (atoms, energy pytree leaves)
    are evaluated in one vmapped kernel call; others one by one (compiled kernels are reused when shapes
    repeat). Returns a list in input order."""
    _check_mode(mode)
    if mode == "hessian":
        return [force_constants(model_or_energy_fn, s, sc, mode=mode, symmetrize=symmetrize, asr=asr)
                for s, sc in zip(structures, _per_structure(supercell, len(structures)))]
    scs = [_as_supercell(s, m) for s, m in zip(structures, _per_structure(supercell, len(structures)))]
    energies = [_energy_of(model_or_energy_fn, sc.crystal) for sc in scs]
    groups: dict = {}
    for k, (sc, e) in enumerate(zip(scs, energies)):
        key = (sc.primitive.n_atoms, sc.crystal.n_atoms, jax.tree_util.tree_structure(e),
               tuple(np.shape(x) for x in jax.tree_util.tree_leaves(e)))
        groups.setdefault(key, []).append(k)
    out: list = [None] * len(scs)
    for idx in groups.values():
        t0 = time.perf_counter()
        V, _, _ = hvp_directions(scs[idx[0]])
        Vp, c = _pad_directions(V, chunk_size)
        es = [energies[k] for k in idx]
        if vmap and len(idx) > 1 and _stackable(es):
            stacked = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *es)
            pos = jnp.stack([jnp.asarray(scs[k].crystal.positions) for k in idx])
            cell = jnp.stack([jnp.asarray(scs[k].crystal.cell) for k in idx])
            hs = np.asarray(_hvp_kernel_batch(stacked, pos, cell, jnp.asarray(Vp), mode, c))[:, :len(V)]
        else:
            hs = [np.asarray(_hvp_kernel(energies[k], jnp.asarray(scs[k].crystal.positions),
                                         jnp.asarray(scs[k].crystal.cell), jnp.asarray(Vp), mode, c))[:len(V)]
                  for k in idx]
        dt = (time.perf_counter() - t0) / len(idx)
        for k, fc in results_from_hvps(hs, idx, scs, symmetrize=symmetrize, asr=asr, mode=mode,
                                       wall_time_s=dt).items():
            out[k] = fc
    return out


def results_from_hvps(hvps, members, supercells, *, symmetrize: bool, asr, mode: str,
                      wall_time_s: float) -> dict:
    """{k: ForceConstants} from all-row Hessian-vector products hvps[m] (3·n_prim, n_super, 3) of structure
    members[m] (shared by the batched and the sharded paths)."""
    out = {}
    for k, h in zip(members, hvps):
        h = np.asarray(h)
        fc, rep = finalize_fc(_rows_from_hvps(h, supercells[k], None), supercells[k], symmetrize=symmetrize,
                              asr=asr, mode=mode, n_hvp=len(h), wall_time_s=wall_time_s)
        out[k] = ForceConstants(supercells[k], fc, None, rep)
    return out


def _per_structure(supercell, n: int) -> list:
    if isinstance(supercell, (list, tuple)) and len(supercell) == n and n > 0 and (
            isinstance(supercell[0], Supercell) or np.ndim(supercell[0]) >= 1 or n != 3):
        return list(supercell)
    return [supercell] * n
