"""The other SevenNet checkpoints shipped in the ``sevenn`` wheel (issue 20, item 3), against sevenn's own torch
models in float64 (external reference, as tests/test_convert_sevennet.py does for SevenNet-0):

- SevenNet-l3i5 (lmax 3, 5 layers): the polynomial cutoff envelope (p = 6) instead of XPLOR;
- SevenNet-0 of 22 May 2024: spherical harmonics of the edge vector itself (normalize=False: |r|^l·Y_l(r̂)).

Each feature is shown to matter: the same weights with the other choice disagree with torch. SevenNet-MF-0
(multi-fidelity) is refused with one line. Bounds: float64 |ΔE|/atom, |ΔF|, |Δσ| ≤ 1e-9 (measured ~1e-14).
Runtime ≈ 1 min on 2 cores (two conversions, two compilations each).
"""
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sevenn")
pytest.importorskip("torch")

import phonjax  # noqa: F401,E402
from ase import Atoms  # noqa: E402

from phonjax.convert.sevennet import UnsupportedFeature, from_checkpoint, read_checkpoint  # noqa: E402
from phonjax.convert.sevennet_torch import torch_energy_forces_stress  # noqa: E402

TOL = 1e-9
CAPS = dict(n_nodes=16, n_edges=1024)


def _checkpoint(rel: str) -> Path:
    import sevenn
    p = Path(sevenn.__file__).parent / "pretrained_potentials" / rel
    if not p.is_file():
        pytest.skip(f"{rel} is not in this sevenn wheel")
    return p


def _crystal() -> Atoms:
    """Li, F, Mg, O in a skewed cell: no symmetry, edges over the whole cutoff range (tests the envelope)."""
    rng = np.random.default_rng(11)
    cell = np.array([[4.6, 0.0, 0.0], [0.7, 4.4, 0.0], [-0.5, 0.6, 4.8]])
    frac = [[0.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, 0.0, 0.2], [0.1, 0.6, 0.7]]
    a = Atoms(["Li", "F", "Mg", "O"], scaled_positions=np.array(frac), cell=cell, pbc=True)
    a.positions += rng.normal(0, 0.08, a.positions.shape)
    return a


def _errors(ref, got, n):
    (E, F, S), (e, f, s) = ref, got
    return dict(E=abs(E - e) / n, F=float(np.abs(F - f).max()), S=float(np.abs(S - s).max()))


@pytest.fixture(autouse=True)
def _torch_float32_default():
    torch = pytest.importorskip("torch")
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    yield
    torch.set_default_dtype(previous)


@pytest.mark.parametrize("rel, feature, other", [
    ("SevenNet_l3i5/checkpoint_l3i5.pth", dict(cutoff="polynomial"),
     dict(cutoff="xplor", cutoff_on=4.5)),
    ("SevenNet_0__22May2024/checkpoint_sevennet_0.pth", dict(sh_normalize=False), dict(sh_normalize=True)),
], ids=["l3i5-polynomial-cutoff", "0-22May2024-unnormalised-sh"])
def test_float64_parity_with_torch(rel, feature, other):
    from phonjax.models.nequip.model import Model

    ck = read_checkpoint(_checkpoint(rel))
    for k, v in feature.items():
        assert ck.arch[k] == v, (k, ck.arch[k])
    atoms = _crystal()
    ref = torch_energy_forces_stress(ck.torch_model, atoms, "float64")
    assert np.abs(ref[1]).max() > 0.1  # real forces: the comparison has teeth
    model = from_checkpoint(ck, "float64")
    err = _errors(ref, model.energy_forces_stress(atoms, graph=model.graph(atoms, **CAPS)), len(atoms))
    print(rel, " ".join(f"|Δ{k}|={v:.2e}" for k, v in err.items()))
    assert err["E"] <= TOL and err["F"] <= TOL and err["S"] <= TOL
    wrong = Model(replace(model.config, **other), model.params, model.metadata)
    bad = _errors(ref, wrong.energy_forces_stress(atoms, graph=wrong.graph(atoms, **CAPS)), len(atoms))
    assert bad["F"] > 1e-4, bad  # the feature is what makes the parity


def test_multi_fidelity_is_refused_in_one_line():
    with pytest.raises(UnsupportedFeature, match="multi-fidelity"):
        read_checkpoint(_checkpoint("SevenNet_MF_0/checkpoint_sevennet_mf_0.pth"))


def test_pretrained_names_resolve_and_unknown_ones_are_one_line():
    from phonjax.convert.sevennet import ConversionError, checkpoint_path, default_checkpoint
    from phonjax.defaults import DEFAULT_MODEL

    assert checkpoint_path(None) == checkpoint_path(DEFAULT_MODEL)  # None: the default model's checkpoint
    assert default_checkpoint() == checkpoint_path("7net-0")
    assert checkpoint_path("7NET-L3I5") == _checkpoint("SevenNet_l3i5/checkpoint_l3i5.pth")
    with pytest.raises(ConversionError, match="pretrained names: 7net-0"):
        checkpoint_path("7net-nope")
