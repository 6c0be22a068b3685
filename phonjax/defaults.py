"""The embedded default model: SevenNet-l3i5 (MIT, shipped in the PyPI wheel ``sevenn``; chosen on the polar
benchmark, ``reports/polar_models.md``: the most accurate of the wheel's checkpoints at about twice SevenNet-0's
cost), converted to a phonjax model directory once and cached. This module is the one home of that choice.

Cache location: ``$PHONJAX_MODEL`` if set (a model directory), else
``$XDG_CACHE_HOME/phonjax/models/sevennet-l3i5`` (``~/.cache/...``). Converting needs torch and sevenn
(``pip install -e .[convert]``); loading does not.
The converter is reached through the registry (:func:`phonjax.models.converter`), imported only when the cache
is empty: this module does not import :mod:`phonjax.convert` (which itself uses :func:`default_model_dir`).
"""
from __future__ import annotations

import os
from pathlib import Path

#: sevenn's name of the default model's checkpoint (``phonjax convert sevennet`` without a source converts it)
DEFAULT_MODEL = "7net-l3i5"
#: its cache directory's name
DEFAULT_MODEL_DIRNAME = "sevennet-l3i5"


def default_model_dir() -> Path:
    env = os.environ.get("PHONJAX_MODEL")
    if env:
        return Path(env)
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "phonjax" / "models" / DEFAULT_MODEL_DIRNAME


def default_model():
    """Load the default model, converting its checkpoint into the cache on first use."""
    from phonjax.models import converter, load_model

    path = default_model_dir()
    if not (path / "config.yaml").is_file():
        try:
            convert_sevennet = converter("sevennet")
        except ImportError as e:
            raise ValueError(f"no default model at {path} and the converter is unavailable ({e}); "
                             "install with `pip install -e .[convert]` or pass --model DIR") from None
        path.parent.mkdir(parents=True, exist_ok=True)
        convert_sevennet(DEFAULT_MODEL, path)
    return load_model(path)
