"""The one ``lr='auto'`` policy: which long-range strategy suits force constants, by where they came from.

Force constants record their provenance when they are made (``ForceConstants.provenance``):

=====================  =================================================  ==============  ===========
provenance             made by                                            auto, Born      auto, none
=====================  =================================================  ==============  ===========
``model``              :func:`phonjax.force_constants.force_constants`    ``recip-auto``  ``none``
                       of an ML model / energy function
``short-range-model``  the same, of a model trained on dipole-subtracted  ``ewald``       ``none``
                       labels (``metadata["long_range"]``)
``external``           phonopy / DFT files (:mod:`phonjax.io.phonopy`),   ``gonze``       ``none``
                       or a ForceConstants built by hand (the default)
=====================  =================================================  ==============  ===========

Which supercell (when none is given, ``supercell_rule="auto"``) is decided here too, by the resolved mode:
``recip-auto`` → the **cutoff** rule (widths ≥ 2·r_max), every other mode → the **receptive** rule (widths ≥ the
model's receptive field). ``recip-auto`` rests on one hypothesis: the model holds the short-ranged (real-space)
part of the dipole interaction with one range Λ*. In the cutoff-rule supercell a Gaussian of one Λ* fits the
model's own polar response; a receptive-field supercell resolves the model's spurious, sign-changing dipolar tail
(out to twice its receptive field), which no Λ fits, and the LO branch bends up next to Γ (reports/lo_hump.md,
reports/lo_supercell.md: the default model on LiF, MgO, SiC and CaF2, SevenNet-0 on LiF; SiC is the exception).

Why: ``gonze`` (phonopy's DynamicalMatrixGL, QE's q2r) subtracts the supercell-periodic dipole sum, which DFT
force constants hold in full; a model holds only a short-ranged share of it, and ``gonze`` then dips the LO
branch at every commensurate q near Γ, while ``recip-auto`` adds the reciprocal-space C_dd with Λ* fitted to the
model's own polar response (:mod:`phonjax.longrange.range_matched`). A model trained on dipole-subtracted
labels holds no dipole–dipole part, so the full Ewald C_dd is added (``ewald``). Without Born data there is
nothing to add (``none``). The measured comparison behind this table is in README.md.
"""
from __future__ import annotations

from phonjax.dynmat import DynmatError
from phonjax.longrange.correction import LongRangeModeError

__all__ = ["PROVENANCES", "AUTO_MODES", "auto_mode", "resolve_mode", "check_provenance", "MissingBornError",
           "SUPERCELL_RULES", "supercell_rule"]


class MissingBornError(LongRangeModeError, DynmatError):
    """A long-range mode was asked for without Born charges and ε∞."""

PROVENANCES = ("model", "short-range-model", "external")
#: ``lr='auto'`` with Born data, per provenance.
AUTO_MODES = {"model": "recip-auto", "short-range-model": "ewald", "external": "gonze"}


#: how a supercell is chosen when none is given: "auto" (:func:`supercell_rule`), or one rule explicitly
SUPERCELL_RULES = ("auto", "receptive", "cutoff")


def supercell_rule(rule: str, mode: str) -> str:
    """The supercell rule ("receptive" or "cutoff") for ``rule`` and the resolved long-range ``mode``."""
    if rule not in SUPERCELL_RULES:
        raise ValueError(f"supercell rule must be one of {SUPERCELL_RULES}, got {rule!r}")
    if rule != "auto":
        return rule
    return "cutoff" if mode == "recip-auto" else "receptive"


def check_provenance(provenance: str) -> str:
    if provenance not in PROVENANCES:
        raise LongRangeModeError(f"unknown force-constant provenance {provenance!r}; "
                                 f"choose one of {', '.join(PROVENANCES)}")
    return provenance


def auto_mode(provenance: str, has_born: bool) -> str:
    """The mode ``auto`` stands for (see the module table)."""
    return AUTO_MODES[check_provenance(provenance)] if has_born else "none"


def resolve_mode(mode: str, provenance: str, born) -> str:
    """``mode`` with ``auto`` resolved; an explicit mode other than ``none`` without Born data is refused."""
    if mode == "auto":
        return auto_mode(provenance, born is not None)
    if mode != "none" and born is None:
        raise MissingBornError(f"lr={mode!r} needs Born charges and ε∞ (born=... or a ForceConstants with born)")
    return mode
