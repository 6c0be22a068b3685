"""The NequIP family (also SevenNet's architecture): ``model.py`` (:class:`~phonjax.models.nequip.model.Model`,
save/load), ``nn/`` (flax.linen + e3nn-jax network, numerically identical to torch nequip) and
``train_adapter.py`` (the training interface). Registered in :data:`phonjax.models.FAMILIES` as ``nequip``;
the modules are imported when a model is loaded, not with this package.
"""
from __future__ import annotations

FAMILY = "nequip"


def load(directory):
    """:class:`~phonjax.models.nequip.model.Model` of a NequIP-family model directory."""
    from phonjax.models.nequip.model import load_nequip  # noqa: PLC0415
    return load_nequip(directory)


def load_trainable(directory):
    """:class:`~phonjax.models.nequip.train_adapter.NequipTrainable` of a NequIP-family model directory."""
    from phonjax.models.nequip.train_adapter import load_trainable as _load  # noqa: PLC0415
    return _load(directory)
