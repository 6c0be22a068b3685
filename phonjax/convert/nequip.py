"""torch nequip → phonjax: `.nequip.zip` packages, Lightning `.ckpt` files and in-memory models.

``convert_nequip(src, out)`` reads the model, maps its architecture to a :class:`phonjax.models.nequip.model.ModelConfig`
(read from the loaded *modules*, not from a config file, so finetuned/packaged models work) and every weight by
name (:mod:`convert.nequip_arch`), checks the converted model against torch on a small structure, and writes a
phonjax model directory atomically (temporary sibling + rename: nothing half-written in OUT on failure).

Unsupported architecture features raise :class:`phonjax.models.nequip.model.UnsupportedFeature` naming the feature.
Loading (:mod:`convert.nequip_load`): checkpoints are read weights-only and may name only nequip's model
builders; a package runs its own bundled code when torch loads it — convert packages from trusted sources only.
torch is imported only in this package.
"""
from __future__ import annotations

import datetime
import time
from pathlib import Path

import numpy as np

from phonjax.convert._common import ConversionError, check_output_dir, compare_energy_forces, sha256_file
from phonjax.convert.nequip_arch import config_and_params
from phonjax.convert.nequip_load import is_package, load_ckpt, load_package, unwrap

from phonjax.models.nequip.model import Model, UnsupportedFeature


EXPECTED_PREFIX = ("type_embed", "spharm", "edge_norm", "bessel_encode", "factor")


# -- public API -------------------------------------------------------------------------------------
def convert_nequip(src, out, *, dtype: str | None = None, overwrite: bool = False, check: bool = True) -> Model:
    """Convert ``src`` (.nequip.zip package or Lightning .ckpt) into the phonjax model directory ``out``.

    dtype: "float32"/"float64" to override the source model's dtype (default: keep it).
    check: compare energies/forces with torch on a small test structure before writing.
    Returns the Model; ``model.metadata["message"]`` says which weights were used (EMA or raw).
    """
    t0 = time.perf_counter()
    src = Path(src)
    if not src.is_file():
        raise ConversionError(f"{src}: no such file")
    outp = check_output_dir(out, overwrite)
    digest = sha256_file(src)
    if is_package(src):
        graph_model, info = load_package(src)  # runs the package's own code (torch.package): trusted sources only
    else:
        graph_model, info = load_ckpt(src)  # weights-only pickle, allowlisted model builders
    model = from_torch_module(graph_model, dtype=dtype, check=check)
    meta = dict(model.metadata)
    meta.update(info)
    if info.get("nequip_version_package"):  # the version that built the model, not the converter's
        meta["converter_nequip_version"] = meta.get("nequip_version")
        meta["nequip_version"] = info["nequip_version_package"]
    meta.update(source_file=str(src.name), source_sha256=digest,
                conversion_date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                conversion_seconds=round(time.perf_counter() - t0, 2))
    model = Model(model.config, model.params, meta)
    model.save(outp, overwrite=overwrite)
    return model


def from_torch_module(graph_model, *, dtype: str | None = None, check: bool = True) -> Model:
    """Model from an in-memory torch nequip ``GraphModel`` (or ``ModuleDict{"sole_model": ...}``)."""
    import torch

    gm = unwrap(graph_model)
    func = gm.model.func if hasattr(gm.model, "func") else gm.model
    names = [n for n, _ in func.named_children()]
    mods = dict(func.named_children())
    _expect_modules(names, mods)
    src_dtype = {torch.float32: "float32", torch.float64: "float64"}[gm.model_dtype]
    config, params = config_and_params(gm, mods, src_dtype)
    if dtype is not None and dtype != src_dtype:
        config = config.replace(dtype=dtype)
        params = _cast_params(params, dtype)
    meta = dict(type_names=list(config.type_names), nequip_version=_nequip_version(gm),
                source_dtype=src_dtype, n_params_torch=int(sum(p.numel() for p in gm.parameters())))
    model = Model(config, params, meta)
    if check:
        err = self_check(gm, model)
        meta["self_check"] = err
        tol = 1e-8 if (src_dtype == "float64" and config.dtype == "float64") else 1e-3
        if not (err["energy_per_atom"] <= tol and err["forces"] <= 10 * tol):
            raise UnsupportedFeature(f"converted model disagrees with torch ({err}); the architecture uses a feature "
                                     "phonjax does not reproduce")
    return model


def _expect_modules(names, mods):
    if tuple(names[:5]) != EXPECTED_PREFIX:
        raise UnsupportedFeature(f"module sequence {names[:6]} is not a NequIP GNN (expected {list(EXPECTED_PREFIX)}…)")
    k = 0
    while f"layer{k}_convnet" in mods:
        k += 1
    rest = names[5 + k:]
    allowed = [["per_atom_energy_readout", "per_type_energy_scale_shift", "total_energy_sum"],
               ["per_atom_energy_readout", "per_type_energy_scale_shift", "pair_potential", "total_energy_sum"]]
    if k == 0 or names[5:5 + k] != [f"layer{i}_convnet" for i in range(k)] or rest not in allowed:
        raise UnsupportedFeature(f"module sequence {names} (expected embedding, layer*_convnet, readout, "
                                 "scale/shift, [pair_potential], total_energy_sum)")


# -- dtype and version ---------------------------------------------------------------------------
def _cast_params(params, dtype):
    import jax
    import jax.numpy as jnp

    def cast(path, x):
        keys = [getattr(p, "key", "") for p in path]
        if keys[0] in ("bessel_encode", "per_type_energy_scale_shift"):
            return x
        return jnp.asarray(x, dtype)

    return jax.tree_util.tree_map_with_path(cast, params)


def _nequip_version(gm) -> str | None:
    try:
        import nequip

        return nequip.__version__
    except Exception:
        return None


# -- self check -----------------------------------------------------------------------------------
def self_check(gm, model: Model) -> dict:
    """|ΔE|/atom and max |ΔF| between torch and phonjax (float64 inputs) on a small rattled 4-atom cell holding
    up to four of the model's species (the first four type names that are chemical symbols)."""
    from ase import Atoms
    from ase.data import atomic_numbers

    torch_types = list(model.type_names)
    picks = [t for t in torch_types if t in atomic_numbers][:4]
    if not picks:
        return {"energy_per_atom": 0.0, "forces": 0.0, "note": "type names are not chemical symbols: not checked"}
    rng = np.random.default_rng(0)
    a = 1.1 * model.r_max / 2.0
    cell = np.eye(3) * a + rng.normal(0, 0.05, (3, 3))
    syms = [picks[i % len(picks)] for i in range(4)]
    frac = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]) + rng.normal(0, 0.02, (4, 3))
    atoms = Atoms(syms, scaled_positions=frac, cell=cell, pbc=True)
    return compare_energy_forces(lambda at: _torch_energy_forces(gm, at), model, atoms)


def torch_graph_input(gm, atoms) -> dict:
    """nequip's input dict (float64) of one structure for the torch GraphModel ``gm``, edges from phonjax's
    neighbour list (no nequip data pipeline: works for packaged models too)."""
    import torch
    from phonjax.graph import neighbor_list

    r_max = float(gm.model.func.edge_norm.r_max)
    i, j, S = neighbor_list(atoms.positions, atoms.cell.array, r_max)
    dt = torch.float64
    tidx = {t: k for k, t in enumerate(gm.type_names)}
    return {
        "pos": torch.tensor(atoms.positions, dtype=dt),
        "edge_index": torch.tensor(np.stack([i, j]), dtype=torch.long),
        "edge_cell_shift": torch.tensor(S, dtype=dt),
        "cell": torch.tensor(atoms.cell.array, dtype=dt).view(1, 3, 3),
        "pbc": torch.ones(1, 3, dtype=torch.bool),
        "atom_types": torch.tensor([tidx[s] for s in atoms.get_chemical_symbols()], dtype=torch.long),
        "num_atoms": torch.tensor([len(atoms)], dtype=torch.long),
    }


def _torch_energy_forces(gm, atoms):
    """Torch E and F of ``atoms`` (float64)."""
    out = gm(torch_graph_input(gm, atoms))
    return float(out["total_energy"].detach().reshape(())), out["forces"].detach().double().numpy()


__all__ = ["convert_nequip", "from_torch_module", "ConversionError", "UnsupportedFeature", "self_check"]
