"""Helpers for model tests: random *perturbed* torch nequip models and torch reference E/F/σ/Hessian.

Only imported by tests that have already done ``pytest.importorskip("nequip")``.
"""
from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.build import bulk

#: OAM-L's 89 types (H–Pu without Po, At, Rn, Fr, Ra).
OAM_TYPES = [s for s in __import__("ase.data", fromlist=["chemical_symbols"]).chemical_symbols[1:95]
             if s not in ("Po", "At", "Rn", "Fr", "Ra")]

SMALL = dict(type_names=["Li", "F", "Mg", "O"], r_max=4.0, irreps_edge_sh="1x0e+1x1o+1x2e",
             type_embed_num_features=8, feature_irreps_hidden=["6x0e+4x1o+3x2e", "5x0e+3x1o+2x2e", "6x0e"],
             radial_mlp_depth=[1, 2, 1], radial_mlp_width=[12, 10, 8], num_bessels=8, bessel_trainable=True,
             polynomial_cutoff_p=5, avg_num_neighbors=17.3)

PARITY = dict(type_names=["Li", "F"], r_max=3.5, irreps_edge_sh="1x0e+1x1o+1x2e",
              type_embed_num_features=6,
              feature_irreps_hidden=["4x0e+3x0o+3x1o+2x1e+2x2e+2x2o", "4x0e+2x0o+2x1o+2x1e+1x2e+1x2o", "5x0e"],
              radial_mlp_depth=[1, 1, 1], radial_mlp_width=[8, 8, 8], num_bessels=6, bessel_trainable=False,
              polynomial_cutoff_p=6, avg_num_neighbors=11.0)

OAM_L = dict(type_names=OAM_TYPES, r_max=6.0, irreps_edge_sh="1x0e+1x1o+1x2e+1x3o", type_embed_num_features=48,
             feature_irreps_hidden=["128x0e+64x1o+32x2e+32x3o"] * 5 + ["128x0e"], radial_mlp_depth=[1] * 6,
             radial_mlp_width=[128] * 6, num_bessels=8, bessel_trainable=True, polynomial_cutoff_p=5,
             avg_num_neighbors=62.012104256525795)


def build_torch_model(arch: dict, *, seed: int = 0, dtype: str = "float64", zbl: bool = True, perturb: float = 0.3,
                      scales_trainable: bool = True):
    """FullNequIPGNNModel with ``arch``, per-type shifts/scales, optional ZBL; every parameter (and
    buffer-held scale/shift) perturbed by a relative random amount so that each weight mapping matters."""
    import torch
    from nequip.model import FullNequIPGNNModel
    from nequip.utils.global_state import set_global_state

    set_global_state()
    types = list(arch["type_names"])
    rng = np.random.default_rng(seed)
    kw = dict(arch)
    kw.update(
        seed=seed, model_dtype=dtype,
        per_type_energy_shifts={t: float(rng.uniform(-5, -1)) for t in types},
        per_type_energy_scales={t: float(rng.uniform(0.5, 2.0)) for t in types},
        per_type_energy_scales_trainable=scales_trainable,
    )
    if zbl:
        kw["pair_potential"] = {"_target_": "nequip.nn.pair_potential.ZBL", "units": "metal",
                                "chemical_species": types}
    model = FullNequIPGNNModel(**kw)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g, dtype=torch.float64).to(p.dtype)
            p.add_(perturb * noise * (p.abs().mean() + 0.1))
    model.eval()
    return model


def torch_reference(model, atoms: Atoms, hessian: bool = False):
    """Torch nequip E (eV), F (n, 3), stress (3, 3) (ASE sign) and optionally the Hessian (3n, 3n) by
    double autograd of the energy w.r.t. positions, all float64 numpy."""
    import torch
    from nequip.data import AtomicDataDict, from_ase
    from nequip.data._nl import compute_neighborlist_
    from nequip.data.transforms import ChemicalSpeciesToAtomTypeMapper
    from nequip.utils.global_state import set_global_state

    set_global_state()  # float64 default dtype: nequip's from_ase builds positions in the default dtype
    type_names = list(model.type_names)
    r_max = float(model.metadata["r_max"])
    data = from_ase(atoms)
    data = compute_neighborlist_(data, r_max)
    data = ChemicalSpeciesToAtomTypeMapper(model_type_names=type_names)(data)
    out = model(dict(data))
    E = float(out[AtomicDataDict.TOTAL_ENERGY_KEY].detach().reshape(()))
    F = out[AtomicDataDict.FORCE_KEY].detach().double().numpy()
    S = out[AtomicDataDict.STRESS_KEY].detach().double().numpy().reshape(3, 3)
    H = None
    if hessian:
        func = model.model.func
        pos0 = data[AtomicDataDict.POSITIONS_KEY].detach().clone()

        def energy(pos):
            d = {k: v for k, v in data.items()}
            d[AtomicDataDict.POSITIONS_KEY] = pos
            d.pop(AtomicDataDict.EDGE_VECTORS_KEY, None)
            d.pop(AtomicDataDict.EDGE_LENGTH_KEY, None)
            return func(d)[AtomicDataDict.TOTAL_ENERGY_KEY].sum()

        H = torch.autograd.functional.hessian(energy, pos0).detach().double().numpy().reshape(
            3 * len(atoms), 3 * len(atoms))
    return E, F, S, H


# -- structures ----------------------------------------------------------------------------------
def lif_primitive() -> Atoms:
    return bulk("LiF", "rocksalt", a=4.03)


def lif_rattled_supercell(n: int = 3, seed: int = 0, amp: float = 0.05) -> Atoms:
    a = bulk("LiF", "rocksalt", a=4.03, cubic=False).repeat((n, n, n))
    a.positions += np.random.default_rng(seed).normal(0, amp, a.positions.shape)
    return a


def triclinic_multi(seed: int = 1) -> Atoms:
    rng = np.random.default_rng(seed)
    cell = np.array([[4.1, 0.3, -0.2], [0.5, 3.8, 0.4], [-0.3, 0.6, 4.4]])
    frac = np.array([[0.0, 0.0, 0.0], [0.5, 0.5, 0.1], [0.25, 0.7, 0.5], [0.8, 0.2, 0.6], [0.4, 0.1, 0.8]])
    frac += rng.normal(0, 0.02, frac.shape)
    return Atoms(["Li", "F", "Mg", "O", "F"], scaled_positions=frac, cell=cell, pbc=True)


def dilute_cell() -> Atoms:
    """Two atoms in a big box: only a few edges, near-isolated atoms."""
    return Atoms(["Li", "F"], positions=[[1.0, 1.0, 1.0], [2.7, 1.9, 1.2]], cell=np.eye(3) * 9.0, pbc=True)
