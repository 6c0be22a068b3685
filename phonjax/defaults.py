"""The embedded default model: SevenNet-0 (MIT, shipped in the PyPI wheel ``sevenn``), converted to a
phonjax model directory once and cached.

Cache location: ``$PHONJAX_MODEL`` if set (a model directory), else ``$XDG_CACHE_HOME/phonjax/models/sevennet-0``
(``~/.cache/...``). Converting needs torch and sevenn (``pip install -e .[convert]``); loading does not.
The converter is reached through the registry (:func:`phonjax.models.converter`), imported only when the cache
is empty: this module does not import :mod:`phonjax.convert` (which itself uses :func:`default_model_dir`).
"""
from __future__ import annotations

import os
from pathlib import Path


def default_model_dir() -> Path:
    env = os.environ.get("PHONJAX_MODEL")
    if env:
        return Path(env)
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "phonjax" / "models" / "sevennet-0"


def default_model():
    """Load the default model, converting SevenNet-0 into the cache on first use."""
    from phonjax.models import converter, load_model

    path = default_model_dir()
    if not (path / "config.yaml").is_file():
        try:
            convert_sevennet = converter("sevennet")
        except ImportError as e:
            raise ValueError(f"no default model at {path} and the converter is unavailable ({e}); "
                             "install with `pip install -e .[convert]` or pass --model DIR") from None
        path.parent.mkdir(parents=True, exist_ok=True)
        convert_sevennet(None, path)
    return load_model(path)
