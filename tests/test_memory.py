"""Automatic memory choice for force constants: a forced small budget makes the engine chunk both the HVP
directions and the message edges, and the float64 force constants stay equal to the unchunked ones."""
import numpy as np
import pytest
from ase.build import bulk

import phonjax  # noqa: F401
from phonjax.force_constants import force_constants
from phonjax.memory import (BASE_BYTES, MIN_EDGE_CHUNK, hvp_bytes_per_direction, parse_bytes, plan_hvp_memory)
from phonjax.models.nequip.model import Model
from phonjax.models.nequip.nn.config import ModelConfig

CFG = ModelConfig(type_names=("Li", "F"), r_max=3.2, feature_irreps_hidden=("4x0e+2x1o", "4x0e"),
                  radial_mlp_depth=(1, 1), radial_mlp_width=(8, 8), avg_num_neighbors=8.0,
                  irreps_edge_sh="1x0e+1x1o", type_embed_num_features=4, dtype="float64")


@pytest.fixture(scope="module")
def setup():
    model = Model.init(CFG, seed=3)
    at = bulk("LiF", "rocksalt", a=4.03)
    at.positions += 0.04 * np.random.default_rng(5).standard_normal(at.positions.shape)
    ref = force_constants(model, at, 2, symmetry=False, chunk_size=None, edge_chunk=0, allow_small_supercell=True)
    return model, at, ref


def test_small_budget_chunks_and_matches(setup):
    model, at, ref = setup
    assert np.abs(ref.fc).max() > 1.0  # eV/Å²: a real signal
    fc = force_constants(model, at, 2, symmetry=False, memory_budget=2**20, allow_small_supercell=True)
    assert fc.report.chunk_size == 1 and 0 < fc.report.edge_chunk <= MIN_EDGE_CHUNK
    assert np.abs(fc.fc - ref.fc).max() < 1e-8


def test_middle_budget_chunks_directions_only(setup, monkeypatch):
    model, at, ref = setup
    g = model.graph(at * (2, 2, 2))
    per = hvp_bytes_per_direction(CFG, g.n_node_capacity, g.n_edge_capacity, 0)
    fixed = BASE_BYTES + 3 * model.n_params() * 8
    monkeypatch.setenv("PHONJAX_MEMORY_BUDGET", str(int(fixed + 2.5 * per)))  # room for two of six directions
    fc = force_constants(model, at, 2, symmetry=False, allow_small_supercell=True)
    assert fc.report.chunk_size == 2 and fc.report.edge_chunk == 0
    assert np.abs(fc.fc - ref.fc).max() < 1e-8
    monkeypatch.setenv("PHONJAX_MEMORY_BUDGET", "64G")  # plenty: all six directions at once, no chunks
    fc = force_constants(model, at, 2, symmetry=False, allow_small_supercell=True)
    assert fc.report.chunk_size is None and fc.report.edge_chunk == 0


def test_plan_rule_for_large_models():
    """The documented rule: on a 24 GiB machine neither SevenNet-0-sized nor OAM-L-sized networks are planned
    beyond the usable memory at LiF 13³ (4394 atoms), and smaller budgets give smaller chunks."""
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).parent))
    from model_fixtures import OAM_L

    oam = ModelConfig(**OAM_L, dtype="float64")
    usable = int(24 * 2**30 * 0.6)
    plan = plan_hvp_memory(oam, 9_605_777, 4480, 409600, 2, memory_budget=usable, grow_edge_chunk=False)
    assert plan.fits and plan.edge_chunk > 0
    small = plan_hvp_memory(oam, 9_605_777, 4480, 409600, 6, memory_budget=int(2.5 * 2**30),
                            grow_edge_chunk=False)
    assert small.chunk_size is not None and small.edge_chunk <= plan.edge_chunk
    # an accelerator with room to spare: larger edge chunks, still within the budget
    big = plan_hvp_memory(oam, 9_605_777, 4480, 409600, 2, memory_budget=80 * 2**30, grow_edge_chunk=True)
    assert big.fits and big.chunk_size is None and big.edge_chunk > plan.edge_chunk
    # unchunked edges would need far more than the machine has: the planner must not pick that
    assert hvp_bytes_per_direction(oam, 4480, 409600, 0) > 24 * 2**30


def test_parse_bytes_and_bad_budget():
    assert parse_bytes("12G") == 12 * 2**30 and parse_bytes("512 MiB") == 512 * 2**20
    assert parse_bytes("1000") == 1000 and parse_bytes("2.5GB") == int(2.5 * 2**30)
    for bad in ("twelve", "-1G", "12Q", "0"):
        with pytest.raises(ValueError):
            parse_bytes(bad)
