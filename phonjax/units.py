"""Physical constants, unit conversions and numerical tolerances: the one place for them.

Internal units: energy eV, length Å, mass amu, force eV/Å, force constants eV/Å², stress eV/Å³, frequencies THz,
charges in units of e, q-points in reduced coordinates of the reciprocal lattice (no 2π) or Cartesian 1/Å (no 2π).
Sources: CODATA 2018 (Rydberg, Bohr, Hartree) and phonopy's ``physical_units`` (VaspToTHz, THzToCm, THzToEv,
the BORN-file Coulomb factor), so numbers compare with phonopy's to its printed precision.
"""
from __future__ import annotations

import math

#: √(eV/Å²/amu) expressed in THz (ordinary frequency, not angular): ν[THz] = √(eigenvalue of D in eV/Å²/amu)
#: × VASP_TO_THZ (phonopy's VaspToTHz).
VASP_TO_THZ = 15.633302
#: THz → cm⁻¹ (phonopy's THzToCm).
THZ_TO_CM1 = 33.35641
#: THz → meV (h·1 THz; phonopy's THzToEv × 1000).
THZ_TO_MEV = 4.135667696
#: e²/(4πε0) in eV·Å (Coulomb constant for charges in e, distances in Å; = Hartree · Bohr, phonopy's BORN factor
#: for VASP, nequip's ZBL constant).
COULOMB_EV_A = 14.399645
RYDBERG_EV = 13.605693122994
BOHR_A = 0.529177210903
HARTREE_EV = 2 * RYDBERG_EV
RY_PER_BOHR_TO_EV_PER_A = RYDBERG_EV / BOHR_A
EV_PER_A3_TO_GPA = 160.21766208
KBAR_TO_GPA = 0.1
TWO_PI = 2 * math.pi

#: Frequency units the phonon engine reports, as factors from THz.
FREQUENCY_UNITS = {"THz": 1.0, "cm-1": THZ_TO_CM1, "meV": THZ_TO_MEV}

# -- Γ tolerances (three meanings, three names) ---------------------------------------------------------------
#: |q_cart| (1/Å, no 2π) below which the phonon engine treats a q-point as Γ: there a direction of approach
#: (q_direction) selects the non-analytic term; band paths give Γ the direction of the neighbouring point.
GAMMA_Q_TOL = 1e-10
#: |q + G| (1/Å, no 2π) below which an Ewald / non-analytic term treats a wave vector as zero (the G = 0 term
#: is dropped, or taken along q_direction); also the q = 0 test of the ``na`` and ``wang`` strategies.
EWALD_Q_ZERO_TOL = 1e-5
#: |q_red| below which a band.yaml q-point counts as Γ when comparing dispersions (reduced coordinates).
BAND_GAMMA_TOL = 1e-8

# Thermodynamics. phonopy's values (CODATA 2006, phonopy.physical_units) so that thermal properties compare
# with phonopy's one to one; CODATA 2018 differs by 6e-7 relative in each.
#: Boltzmann constant in eV/K.
KB_EV_K = 8.617338256808316e-05
#: 1 eV per particle in kJ/mol (e·N_A/1000).
EV_TO_KJ_MOL = 96.4853905398362
