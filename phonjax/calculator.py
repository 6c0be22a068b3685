"""ASE calculator over a phonjax :class:`~phonjax.models.nequip.model.Model` (energy, free_energy, forces, stress).

The neighbour graph is rebuilt on every call (host, vesin); its capacities are bucketed, so the
jit-compiled energy/force/stress function is reused for structures of the same bucketed size.
Stress is returned in ASE's Voigt order (xx, yy, zz, yz, xz, xy), eV/Å³, ASE's sign convention.
"""
from __future__ import annotations

from ase.calculators.calculator import Calculator as _AseCalculator, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from phonjax.models import load_model
from phonjax.models.nequip.model import Model


class Calculator(_AseCalculator):
    """``Calculator(model)`` with a Model or a model directory path."""

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, model, **kwargs):
        super().__init__(**kwargs)
        self.model = model if isinstance(model, Model) else load_model(model)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        e, f, s = self.model.energy_forces_stress(self.atoms)
        self.results = {"energy": e, "free_energy": e, "forces": f, "stress": full_3x3_to_voigt_6_stress(s)}
