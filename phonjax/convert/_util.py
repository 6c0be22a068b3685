"""Helpers shared by the converters: their error type, irreps strings, file hashes."""
from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file (provenance of converted weights)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class ConversionError(ValueError):
    """The source is not a (readable) model of the converter's kind."""


def irreps_str(x) -> str:
    """Canonical phonjax irreps string of a torch/e3nn irreps object or string."""
    from phonjax.models.nequip.nn import irreps as I  # noqa: PLC0415

    return I.irreps_str(I.parse_irreps(str(x)))
