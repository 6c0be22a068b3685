"""Model families as plugins: the protocol the phonon code needs, and registries of families and converters.

A *family* is an energy-model architecture with its own code under ``phonjax/models/<name>/`` (today NequIP,
which SevenNet also runs on; MACE or Allegro would sit beside it). Its package provides ``load(directory)``
→ a :class:`PhononModel` and ``load_trainable(directory)`` → a :class:`phonjax.train.model_api.TrainableModel`.
A model directory names its family in ``config.yaml`` (``family: nequip``; directories written before families
existed have none and are NequIP). :func:`load_model` and :func:`load_trainable` dispatch on it.

Converters (torch checkpoints → model directories) live in :mod:`phonjax.convert` and are reached through
:func:`converter` by name, imported only when called: the library itself never imports torch or a converter,
so ``phonjax.defaults`` converting the default model on first use is not an import cycle.

Nothing here imports a family or a converter at module level (families are named by module path), so this
package sits below every family and above none.
"""
from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import Callable, Protocol, runtime_checkable

__all__ = ["PhononModel", "ModelLoadError", "FAMILIES", "CONVERTERS", "register_family", "register_converter",
           "family_of", "load_model", "load_trainable", "converter", "DEFAULT_FAMILY"]

#: The family of a ``config.yaml`` that names none.
DEFAULT_FAMILY = "nequip"

#: family name → module providing ``load(directory)`` and ``load_trainable(directory)``.
FAMILIES: dict[str, str] = {"nequip": "phonjax.models.nequip"}

#: converter name → "module:function" taking (source, out_dir, ...) and returning the converted model.
CONVERTERS: dict[str, str] = {"nequip": "phonjax.convert.nequip:convert_nequip",
                              "sevennet": "phonjax.convert.sevennet:convert_sevennet"}


class ModelLoadError(ValueError):
    """A model directory is missing, incomplete, corrupt or of an unknown family."""


@runtime_checkable
class PhononModel(Protocol):
    """What force constants and ``predict`` need from a model.

    family: registry name; r_max: cutoff radius (Å); receptive_field: how far (Å) an atom's energy depends on
    other atoms (message passing: layers × r_max; strictly local models: r_max) — ``predict``'s default
    supercell is as wide as this; bind(crystal, *, edge_chunk) → ``E(positions (n, 3) Å, cell (3, 3) Å)`` (eV),
    pure, jit-able and twice differentiable.
    """

    family: str

    @property
    def r_max(self) -> float: ...

    @property
    def receptive_field(self) -> float: ...

    def bind(self, crystal, *, edge_chunk: int | None = None) -> Callable: ...


def register_family(name: str, module: str) -> None:
    """Register (or replace) a family: ``module`` provides ``load`` and ``load_trainable``."""
    FAMILIES[str(name)] = str(module)


def register_converter(name: str, target: str) -> None:
    """Register (or replace) a converter: ``target`` is ``"module:function"``."""
    if ":" not in target:
        raise ValueError(f"converter target must be 'module:function', got {target!r}")
    CONVERTERS[str(name)] = str(target)


def family_of(directory) -> str:
    """The family a model directory's ``config.yaml`` names (:data:`DEFAULT_FAMILY` when it names none)."""
    import yaml  # noqa: PLC0415

    d = Path(directory).absolute()
    if not d.is_dir():
        raise ModelLoadError(f"model directory {d} does not exist")
    cfg = d / "config.yaml"
    if not cfg.is_file():
        raise ModelLoadError(f"{d} is not a phonjax model directory (missing config.yaml)")
    try:
        raw = yaml.safe_load(cfg.read_text())
    except yaml.YAMLError as e:
        raise ModelLoadError(f"{cfg}: {e}") from None
    family = raw.get("family", DEFAULT_FAMILY) if isinstance(raw, dict) else DEFAULT_FAMILY
    if family not in FAMILIES:
        raise ModelLoadError(f"{cfg}: unknown model family {family!r} (known: {', '.join(sorted(FAMILIES))})")
    return family


def _family(directory):
    return import_module(FAMILIES[family_of(directory)])


def load_model(directory) -> PhononModel:
    """Load a phonjax model directory with its family's loader (see module docstring)."""
    return _family(directory).load(directory)


def load_trainable(directory):
    """The training adapter (:class:`~phonjax.train.model_api.TrainableModel`) of a model directory."""
    return _family(directory).load_trainable(directory)


def converter(name: str) -> Callable:
    """The converter function registered as ``name`` (imported now; it may need torch)."""
    if name not in CONVERTERS:
        raise ValueError(f"unknown converter {name!r} (known: {', '.join(sorted(CONVERTERS))})")
    module, func = CONVERTERS[name].split(":")
    return getattr(import_module(module), func)
