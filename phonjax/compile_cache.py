"""Persistent XLA compilation cache: compile a kernel once per machine, not once per process.

:func:`enable_compile_cache` points JAX's own persistent cache (``jax_compilation_cache_dir``) at a directory
under the user's cache directory and lowers its thresholds so that phonjax's kernels (force constants, C(q),
long range, eigh, training steps) are all written: JAX's defaults skip executables that compiled in under a
second, which on a GPU are most of them. Nothing is switched on at import; the CLI calls this function (unless
``--no-compile-cache``), library users call it themselves.

Location: ``path`` argument, else ``$PHONJAX_COMPILE_CACHE``, else ``$XDG_CACHE_HOME/phonjax/xla``
(``~/.cache/phonjax/xla``). ``PHONJAX_NO_COMPILE_CACHE=1`` disables it whatever the caller asks.

The cache is trusted code: JAX loads executables from it, so it must not be writable by other users.
Entries are keyed by the lowered program, the jax/jaxlib version, the device kind and the compile options, so a
stale or foreign entry is never used for a different program; :func:`clear_compile_cache` empties it.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

__all__ = ["enable_compile_cache", "disable_compile_cache", "compile_cache_dir", "default_compile_cache_dir",
           "clear_compile_cache", "ENV_DIR", "ENV_DISABLE"]

#: Environment variable naming the cache directory.
ENV_DIR = "PHONJAX_COMPILE_CACHE"
#: Environment variable that disables the cache when set to 1/true/yes/on.
ENV_DISABLE = "PHONJAX_NO_COMPILE_CACHE"

_TRUE = ("1", "true", "yes", "on")


def default_compile_cache_dir() -> Path:
    """``$PHONJAX_COMPILE_CACHE`` or ``$XDG_CACHE_HOME/phonjax/xla`` (``~/.cache/phonjax/xla``)."""
    env = os.environ.get(ENV_DIR)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "phonjax" / "xla"


def disabled_by_env() -> bool:
    return os.environ.get(ENV_DISABLE, "").strip().lower() in _TRUE


def enable_compile_cache(path=None, *, min_compile_time_s: float = 0.0) -> Path | None:
    """Use a persistent compilation cache in ``path`` (None: :func:`default_compile_cache_dir`) for every
    kernel compiled from now on in this process. Returns the directory, or None when ``PHONJAX_NO_COMPILE_CACHE``
    disables it. ``min_compile_time_s``: executables that compiled faster are not written (0: all are; reading
    one back costs milliseconds, compiling a phonjax kernel seconds). May be called again to change the path."""
    if disabled_by_env():
        return None
    if min_compile_time_s < 0:
        raise ValueError(f"min_compile_time_s must be >= 0, got {min_compile_time_s}")
    import jax
    from jax.experimental.compilation_cache import compilation_cache as cc

    d = Path(path).expanduser() if path is not None else default_compile_cache_dir()
    try:
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as e:
        raise ValueError(f"cannot create the compilation cache directory {d}: {e}") from None
    jax.config.update("jax_compilation_cache_dir", str(d.absolute()))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_time_s))
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)  # no size floor
    jax.config.update("jax_enable_compilation_cache", True)
    cc.reset_cache()  # a process that compiled before this call would otherwise never look at the cache
    return d


def disable_compile_cache() -> None:
    """Stop reading and writing the persistent cache in this process."""
    import jax
    from jax.experimental.compilation_cache import compilation_cache as cc

    jax.config.update("jax_enable_compilation_cache", False)
    cc.reset_cache()


def compile_cache_dir() -> Path | None:
    """The directory the persistent cache uses now, or None when it is off."""
    import jax

    d = jax.config.jax_compilation_cache_dir
    return Path(d) if d and jax.config.jax_enable_compilation_cache else None


def clear_compile_cache(path=None) -> None:
    """Delete the cache directory (``path`` or the default)."""
    d = Path(path).expanduser() if path is not None else default_compile_cache_dir()
    if d.is_dir():
        shutil.rmtree(d)
