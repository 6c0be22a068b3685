"""Physical constants and unit conversions: the one place for them.

Internal units: energy eV, length Å, mass amu, force eV/Å, force constants eV/Å²,
stress eV/Å³, frequencies THz. Charges in units of e.
"""
from __future__ import annotations

import math

#: √(eV/Å²/amu) expressed in THz (ordinary frequency, not angular): ν = √λ · EV_A2_AMU_TO_THZ / (2π) · 2π
#: i.e. ν[THz] = √(eigenvalue of D in eV/Å²/amu) × VASP_TO_THZ.
VASP_TO_THZ = 15.633302
THZ_TO_CM1 = 33.35641
THZ_TO_MEV = 4.135667696
#: e²/(4πε0) in eV·Å (Coulomb constant for charges in e, distances in Å).
COULOMB_EV_A = 14.399645
RYDBERG_EV = 13.605693122994
BOHR_A = 0.529177210903
HARTREE_EV = 2 * RYDBERG_EV
RY_PER_BOHR_TO_EV_PER_A = RYDBERG_EV / BOHR_A
EV_PER_A3_TO_GPA = 160.21766208
KBAR_TO_GPA = 0.1
TWO_PI = 2 * math.pi

# Thermodynamics. phonopy's values (CODATA 2006, phonopy.physical_units) so that thermal properties compare
# with phonopy's one to one; CODATA 2018 differs by 6e-7 relative in each.
#: Boltzmann constant in eV/K.
KB_EV_K = 8.617338256808316e-05
#: 1 eV per particle in kJ/mol (e·N_A/1000).
EV_TO_KJ_MOL = 96.4853905398362
