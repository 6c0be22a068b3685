"""Labelled structures for finetuning: extended-XYZ reading, validation, seeded split, energy references.

A :class:`Frame` is one labelled structure: numbers (n,), positions (n, 3) Å, cell (3, 3) Å (rows),
energy eV, forces (n, 3) eV/Å, stress (3, 3) eV/Å³ in ASE's sign convention (σ = (1/V) ∂E/∂ε) or None
(read from ``stress``, or from a ``virial`` W (eV) in info as σ = −W/V).
Isolated-atom reference energies (eV per element) are read from the file when present: ``info`` keys
``isolated_atom_energies`` (a dict or "Li:-200.1,F:-650.2" string) or ``E0_<Symbol>`` /
``isolated_energy_<Symbol>``, or single-atom frames tagged ``config_type=IsolatedAtom`` (MACE's
convention; those frames are removed from the training data).

All checks happen before training starts; each failure is a :class:`DatasetError` with a one-line
message naming the file and frame.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ase.data import chemical_symbols


class DatasetError(ValueError):
    """The training data cannot be used (missing labels, NaN, unknown species, empty split ...)."""


@dataclass(frozen=True, eq=False)
class Frame:
    numbers: np.ndarray
    positions: np.ndarray
    cell: np.ndarray
    energy: float
    forces: np.ndarray
    stress: np.ndarray | None
    source: str = ""

    @property
    def n_atoms(self) -> int:
        return int(self.numbers.shape[0])


@dataclass(frozen=True)
class Dataset:
    """Frames plus per-element isolated-atom reference energies (eV; may be empty)."""

    frames: tuple[Frame, ...]
    isolated_atom_energies: dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.frames)

    def species(self) -> set[str]:
        return {chemical_symbols[z] for f in self.frames for z in f.numbers}


def _parse_refs(info: dict) -> dict[str, float]:
    refs: dict[str, float] = {}
    val = info.get("isolated_atom_energies")
    if isinstance(val, dict):
        refs.update({str(k): float(v) for k, v in val.items()})
    elif isinstance(val, str):
        for item in val.replace(";", ",").split(","):
            if ":" in item:
                k, v = item.split(":", 1)
                refs[k.strip()] = float(v)
    for k, v in info.items():
        for prefix in ("E0_", "isolated_energy_", "isolated_atom_energy_"):
            if k.startswith(prefix) and k[len(prefix):] in chemical_symbols:
                refs[k[len(prefix):]] = float(v)
    return refs


def _stress_3x3(s) -> np.ndarray:
    s = np.asarray(s, dtype=np.float64)
    if s.shape == (6,):  # Voigt xx yy zz yz xz xy
        xx, yy, zz, yz, xz, xy = s
        return np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
    return s.reshape(3, 3)


def frames_from_atoms(images, source: str = "", *, require_stress: bool = False) -> Dataset:
    """Validate ASE images (energy/forces/stress from a calculator or from info/arrays) into a Dataset."""
    frames, refs = [], {}
    for k, at in enumerate(images):
        where = f"{source}: frame {k}"
        info = dict(at.info)
        refs.update(_parse_refs(info))
        calc = at.calc
        results = dict(getattr(calc, "results", {}) or {})
        energy = results.get("energy", results.get("free_energy", info.get("energy", info.get("REF_energy"))))
        forces = results.get("forces", at.arrays.get("forces", at.arrays.get("REF_forces")))
        stress = results.get("stress", info.get("stress", info.get("REF_stress")))
        virial = info.get("virial", info.get("REF_virial"))
        if stress is None and virial is not None:  # virial W = −V σ (MACE/nequip extxyz convention)
            stress = -_stress_3x3(virial) / abs(np.linalg.det(at.cell.array))
        if str(info.get("config_type", "")).lower() in ("isolatedatom", "isolated_atom") and len(at) == 1:
            if energy is None:
                raise DatasetError(f"{where}: isolated-atom frame without an energy")
            refs[at.get_chemical_symbols()[0]] = float(energy)
            continue
        if len(at) == 0:
            raise DatasetError(f"{where}: no atoms")
        if energy is None:
            raise DatasetError(f"{where}: no energy label")
        if forces is None:
            raise DatasetError(f"{where}: no forces label")
        forces = np.asarray(forces, dtype=np.float64)
        if forces.shape != (len(at), 3):
            raise DatasetError(f"{where}: forces have shape {forces.shape}, expected ({len(at)}, 3)")
        if stress is None and require_stress:
            raise DatasetError(f"{where}: no stress label (set data.use_stress: false to train without)")
        stress3 = None if stress is None else _stress_3x3(stress)
        energy = float(energy)
        bad = [name for name, v in (("energy", energy), ("forces", forces), ("stress", stress3),
                                   ("positions", at.positions), ("cell", at.cell.array))
               if v is not None and not np.all(np.isfinite(v))]
        if bad:
            raise DatasetError(f"{where}: non-finite values (NaN/inf) in {', '.join(bad)}")
        if not all(at.pbc):
            raise DatasetError(f"{where}: structure is not periodic in all directions")
        if abs(np.linalg.det(at.cell.array)) < 1e-8:
            raise DatasetError(f"{where}: singular cell")
        frames.append(Frame(np.asarray(at.numbers, np.int64).copy(), np.asarray(at.positions, np.float64).copy(),
                            np.asarray(at.cell.array, np.float64).copy(), energy, forces.copy(), stress3,
                            f"{source}#{k}"))
    return Dataset(tuple(frames), refs)


def read_extxyz(path: str | Path, *, require_stress: bool = False, max_structures: int | None = None) -> Dataset:
    """Read an extended-XYZ file (as written by ASE or phonjax's dataset builder) into a Dataset."""
    import ase.io
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"dataset file not found: {path}")
    try:
        images = ase.io.read(path, index=":", format="extxyz")
    except Exception as e:  # noqa: BLE001 - ASE raises many types on malformed files
        raise DatasetError(f"{path}: cannot read as extended XYZ ({type(e).__name__}: {e})") from None
    ds = frames_from_atoms(images, str(path), require_stress=require_stress)
    if max_structures is not None:
        ds = Dataset(ds.frames[:max_structures], ds.isolated_atom_energies)
    return ds


def check_species(ds: Dataset, type_names, where: str = "dataset") -> None:
    """Error naming every element of ``ds`` the model does not know."""
    unknown = sorted(ds.species() - set(type_names))
    if unknown:
        raise DatasetError(f"{where}: species {unknown} unknown to the model (it knows {list(type_names)})")


def split(ds: Dataset, valid_fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    """Seeded random split into (train, valid); default 4:1 (valid_fraction 0.2). Both must be non-empty."""
    n = len(ds)
    n_valid = int(round(n * valid_fraction))
    if n < 2 or n_valid < 1 or n_valid >= n:
        raise DatasetError(f"cannot split {n} structure(s) with valid_fraction={valid_fraction}: "
                           "a split would be empty (give more data or a separate valid file)")
    perm = np.random.default_rng(seed).permutation(n)
    valid = tuple(ds.frames[i] for i in sorted(perm[:n_valid]))
    train = tuple(ds.frames[i] for i in sorted(perm[n_valid:]))
    return Dataset(train, ds.isolated_atom_energies), Dataset(valid, ds.isolated_atom_energies)


def load_splits(train: str, valid: str | None, *, valid_fraction: float = 0.2, seed: int = 0,
                use_stress: bool = True, max_structures: int | None = None,
                isolated_atom_energies: dict[str, float] | None = None,
                type_names=None) -> tuple[Dataset, Dataset]:
    """Read, validate and split. Explicit ``isolated_atom_energies`` take precedence over the file's."""
    ds = read_extxyz(train, max_structures=max_structures)
    if valid:
        dv = read_extxyz(valid, max_structures=max_structures)
        tr, va = ds, dv
    else:
        tr, va = split(ds, valid_fraction, seed)
    refs = {**ds.isolated_atom_energies, **(isolated_atom_energies or {})}
    tr, va = Dataset(tr.frames, refs), Dataset(va.frames, refs)
    for name, d in (("training split", tr), ("validation split", va)):
        if len(d) == 0:
            raise DatasetError(f"{name} of {train} is empty")
        if type_names is not None:
            check_species(d, type_names, f"{name} ({train if name[0] == 't' else valid or train})")
    if use_stress:
        # stress is used where present; structures without it are masked out of the stress term
        pass
    return tr, va


def composition_matrix(ds: Dataset, type_names) -> np.ndarray:
    """(n_frames, n_types) counts of each model type per frame."""
    idx = {s: i for i, s in enumerate(type_names)}
    out = np.zeros((len(ds), len(type_names)))
    for k, f in enumerate(ds.frames):
        for z in f.numbers:
            out[k, idx[chemical_symbols[z]]] += 1
    return out


# ----------------------------------------------------------------------------------------------
# padded batches with static shapes
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Capacities:
    """Static batch shape: n_graphs = batch_size + 1 (the last graph holds the padding nodes/edges)."""

    n_nodes: int
    n_edges: int
    n_graphs: int


def compute_capacities(sizes: list[tuple[int, int]], batch_size: int) -> Capacities:
    """Capacities that fit ANY batch of ``batch_size`` frames drawn from frames of the given
    (n_nodes, n_edges) sizes, so that one compilation serves every epoch (+1 node/edge of slack
    for the padding graph)."""
    if not sizes:
        raise DatasetError("no structures to batch")
    k = min(batch_size, len(sizes))
    nodes = sorted((s[0] for s in sizes), reverse=True)[:k]
    edges = sorted((s[1] for s in sizes), reverse=True)[:k]
    from phonjax.graph import bucket  # the model's bucketed capacities (≤ 12.5 % padding)
    return Capacities(bucket(sum(nodes) + 1), bucket(sum(edges) + 1), batch_size + 1)


def epoch_order(n: int, batch_size: int, seed: int, stage: int, epoch: int, shuffle: bool = True) -> list[list[int]]:
    """Frame indices of each batch of an epoch: a pure function of (seed, stage, epoch)."""
    idx = np.random.default_rng([seed, stage, epoch]).permutation(n) if shuffle else np.arange(n)
    return [idx[i:i + batch_size].tolist() for i in range(0, n, batch_size)]
