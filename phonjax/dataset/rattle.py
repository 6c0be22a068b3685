"""Rattled structures for training data: Gaussian noise on positions and on the cell (seeded).

The cell is strained by a random symmetric strain ε (components ~ N(0, strain_sigma²)):
cell' = cell · (1 + ε) (rows are lattice vectors), atoms follow the strain (fixed fractional coordinates),
then each Cartesian position gets independent N(0, position_sigma²) noise (Å). Sample ``i`` of seed ``s``
uses ``numpy.random.default_rng([s, i])``: every sample is reproducible on its own, in any order, which a
resumed run relies on.
"""
from __future__ import annotations

import numpy as np

from ..structure import Crystal


def rattle(crystal: Crystal, rng: np.random.Generator, *, position_sigma: float = 0.03,
           strain_sigma: float = 0.0) -> Crystal:
    """Randomly strained and displaced copy of ``crystal``.

    position_sigma: Å, std of each Cartesian displacement; strain_sigma: dimensionless std of the
    symmetric strain components.
    """
    if position_sigma < 0 or strain_sigma < 0:
        raise ValueError("rattle amplitudes must be non-negative")
    crystal = Crystal.coerce(crystal)
    eps = rng.normal(0.0, strain_sigma, size=(3, 3)) if strain_sigma > 0 else np.zeros((3, 3))
    eps = 0.5 * (eps + eps.T)
    deform = np.eye(3) + eps
    cell = crystal.cell @ deform
    pos = crystal.positions @ deform
    if position_sigma > 0:
        pos = pos + rng.normal(0.0, position_sigma, size=pos.shape)
    return Crystal(cell, pos, crystal.numbers, crystal.masses)


def rattled_sample(crystal: Crystal, seed: int, index: int, *, position_sigma: float,
                   strain_sigma: float) -> Crystal:
    """Sample ``index`` of the seeded sequence (independent of the other samples)."""
    rng = np.random.default_rng([int(seed), int(index)])
    return rattle(crystal, rng, position_sigma=position_sigma, strain_sigma=strain_sigma)
