"""What both converters share: their error type, the output-directory rule, safe (weights-only) loading of
torch pickles, provenance hashing, irreps strings and the torch-vs-phonjax self-check comparison.

Loading model files safely
--------------------------
A torch *checkpoint* (``.ckpt``, ``.pth``) is a pickle: loaded with ``torch.load(weights_only=False)`` it can
run any callable it names. :func:`safe_torch_load` loads it with ``weights_only=True`` and allows only the few
data-only classes Lightning/omegaconf/numpy checkpoints contain (:func:`safe_globals`); anything else is
refused, naming the offending global, before any of it runs. A torch *package* (``.nequip.zip``) is
different: it carries its own Python source, which torch runs when the package is loaded. phonjax cannot
sandbox that — convert only packages from sources you trust.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np


class ConversionError(ValueError):
    """The source is not a (readable, allowed) model of the kind the converter was asked for."""


class OutputExistsError(FileExistsError):
    """The output directory exists and is not empty (pass ``overwrite=True`` to replace it)."""


def check_output_dir(out, overwrite: bool) -> Path:
    """``out`` as a Path; OutputExistsError if it exists, is not an empty directory and ``overwrite`` is off."""
    outp = Path(out)
    if outp.exists() and (not outp.is_dir() or any(outp.iterdir())) and not overwrite:
        raise OutputExistsError(f"{outp} exists and is not empty")
    return outp


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file (provenance of converted weights)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def irreps_str(x) -> str:
    """Canonical phonjax irreps string of an e3nn ``Irreps`` (or anything whose str() parses)."""
    from phonjax.models.nequip.nn import irreps as I

    return I.irreps_str(I.parse_irreps(str(x)))


# -- weights-only loading ---------------------------------------------------------------------------
#: data-only globals that Lightning, omegaconf and numpy put into checkpoints: (module, name)
_SAFE_GLOBAL_NAMES = (
    ("builtins", "dict"), ("builtins", "list"), ("builtins", "tuple"), ("builtins", "set"), ("builtins", "int"),
    ("builtins", "float"), ("builtins", "str"), ("builtins", "bool"), ("collections", "defaultdict"),
    ("collections", "OrderedDict"), ("typing", "Any"),
    ("omegaconf.dictconfig", "DictConfig"), ("omegaconf.listconfig", "ListConfig"),
    ("omegaconf.base", "ContainerMetadata"), ("omegaconf.base", "Metadata"), ("omegaconf.nodes", "AnyNode"),
    ("omegaconf.nodes", "StringNode"), ("omegaconf.nodes", "IntegerNode"), ("omegaconf.nodes", "FloatNode"),
    ("omegaconf.nodes", "BooleanNode"),
    ("lightning.fabric.utilities.data", "AttributeDict"), ("pytorch_lightning.utilities.parsing", "AttributeDict"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
)


def safe_globals() -> list:
    """The allowlist for ``torch.serialization.safe_globals``: data-only classes (containers, omegaconf nodes,
    Lightning's AttributeDict, numpy arrays and dtypes) that are importable here, under the names pickles
    use for them. Nothing that can reach the file system, processes or arbitrary imports."""
    import importlib

    out = []
    for mod, name in _SAFE_GLOBAL_NAMES:
        try:
            out.append(getattr(importlib.import_module(mod), name))
        except (ImportError, AttributeError):
            continue
    # numpy arrays are pickled through a private reconstructor whose module moved in numpy 2
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    out.append((_reconstruct, "numpy.core.multiarray._reconstruct"))
    out.append((_reconstruct, "numpy._core.multiarray._reconstruct"))
    out += [type(np.dtype(t)) for t in ("f4", "f8", "i4", "i8", "b1", "u1")]  # numpy.dtypes.*DType
    return out


def safe_torch_load(path: Path, what: str):
    """``torch.load(path, weights_only=True)`` on CPU with :func:`safe_globals` allowed.

    A pickle that names any other global (a callable that could run code) is refused with ConversionError
    naming it, before anything in the file is executed. ``what`` names the expected kind in other errors.
    """
    import pickle
    import re

    import torch

    try:
        with torch.serialization.safe_globals(safe_globals()):
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        bad = _unsafe_globals(path)
        hit = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(e))
        if bad or hit:
            named = ", ".join(bad[:3]) if bad else hit.group(1)
            raise ConversionError(f"{path}: refused to load (nothing in it was run): its pickle needs {named}, "
                                  f"which {'is' if len(bad) <= 1 else 'are'} not plain data and could run code "
                                  "(weights-only loading)") from None
        raise ConversionError(f"{path}: not a {what} (UnpicklingError)") from None
    except Exception as e:
        raise ConversionError(f"{path}: not a {what} ({type(e).__name__})") from None


def _unsafe_globals(path: Path) -> list[str]:
    """Globals named by the checkpoint's pickle that the allowlist lacks (read, not executed)."""
    import torch

    allowed = set()
    for g in safe_globals():
        obj, name = g if isinstance(g, tuple) else (g, f"{g.__module__}.{g.__qualname__}")
        allowed.add(name)
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception:
        return []
    return [n for n in names if n not in allowed]


# -- self-check ------------------------------------------------------------------------------------
def compare_energy_forces(torch_ef, model, atoms) -> dict:
    """|ΔE|/atom (eV) and max |ΔF| (eV/Å) between ``torch_ef(atoms) -> (E, F)`` and the phonjax ``model``."""
    E_t, F_t = torch_ef(atoms)
    E_j, F_j, _ = model.energy_forces_stress(atoms)
    return {"energy_per_atom": abs(E_t - E_j) / len(atoms), "forces": float(np.max(np.abs(F_t - F_j)))}


__all__ = ["ConversionError", "OutputExistsError", "check_output_dir", "sha256_file", "irreps_str",
           "safe_globals", "safe_torch_load", "compare_energy_forces"]
