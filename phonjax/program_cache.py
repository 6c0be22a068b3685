"""Traced programs kept across processes: trace a kernel once per machine, not once per process.

The persistent XLA cache (:mod:`phonjax.compile_cache`) saves compiling, but every new process still traces
the Python code of a kernel to find its program (for a NequIP force-constant kernel: seconds, as long as the
computation itself in a small supercell). :func:`cached_call` keeps the traced program instead: the first call
exports it (``jax.export``: serialized StableHLO, data, not code objects or pickles) to
``<compile cache>/exported/``; a later process with the same inputs deserializes it and calls it, so neither the
model nor e3nn-jax is traced again, and its compilation is then a read from the XLA cache.

On and off with the compile cache (one switch: :func:`phonjax.compile_cache.enable_compile_cache`); with the
cache off, :func:`cached_call` is the plain jitted call. An entry is keyed by the kernel's name and static
options, the tree structure, shapes and dtypes of its inputs, the backend, the jax settings that change tracing
(x64, default matmul precision) and a fingerprint of phonjax's own source files and of the versions of jax,
jaxlib, e3nn-jax, flax and numpy — so a new phonjax, library or model architecture never reuses an old program.
An unreadable entry is traced again and rewritten. :func:`cached_json` keeps small derived values (e.g. a model's parameter shapes) the same way.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
import tempfile
from typing import Any, Callable

import jax

from phonjax.xla_options import kernel_compiler_options

__all__ = ["cached_call", "cached_json", "program_cache_dir", "source_fingerprint", "clear_memory"]

#: the subdirectory of the compile cache that holds exported programs
SUBDIR = "exported"

#: what Python's default repr of an object shows (its address): such inputs are never cached
_IDENTITY_REPR = " at 0x"
#: libraries whose code ends up in a traced program
_LIBRARIES = ("jax", "jaxlib", "e3nn-jax", "flax", "numpy")
_CALLS: dict[str, Callable] = {}  # key → jitted call of the deserialized program (this process)
_FINGERPRINT: list[str] = []


def program_cache_dir() -> Path | None:
    """``<compile cache>/exported`` while the persistent compile cache is on, else None."""
    from phonjax.compile_cache import compile_cache_dir

    d = compile_cache_dir()
    return None if d is None else d / SUBDIR


def source_fingerprint() -> str:
    """sha256 of phonjax's own ``.py`` files (names and contents) with the versions of the libraries whose code a
    traced program holds (jax, jaxlib, e3nn-jax, flax, numpy); computed once per process."""
    if not _FINGERPRINT:
        from importlib.metadata import PackageNotFoundError, version

        def ver(name):
            try:
                return version(name)
            except PackageNotFoundError:
                return "-"

        h = hashlib.sha256("|".join(f"{n}={ver(n)}" for n in _LIBRARIES).encode())
        root = Path(__file__).resolve().parent
        for p in sorted(root.rglob("*.py")):
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
        _FINGERPRINT.append(h.hexdigest())
    return _FINGERPRINT[0]


def clear_memory() -> None:
    """Forget the programs loaded in this process (the files stay): the next call reads them from disk."""
    _CALLS.clear()


def _settings() -> str:
    return (f"{jax.default_backend()}|x64={jax.config.jax_enable_x64}|"
            f"prec={jax.config.jax_default_matmul_precision}|{source_fingerprint()}")


def _key(name: str, treedef, leaves, static: dict) -> str:
    shapes = [(tuple(getattr(x, "shape", ())), str(getattr(x, "dtype", type(x).__name__))) for x in leaves]
    text = json.dumps([name, sorted((k, repr(v)) for k, v in static.items()), repr(treedef), shapes, _settings()])
    return hashlib.sha256(text.encode()).hexdigest()[:40]


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError:  # a cache that cannot be written is only slower
        Path(tmp).unlink(missing_ok=True)


def _load(path: Path):
    try:
        return jax.export.deserialize(bytearray(path.read_bytes()))
    except Exception:  # noqa: BLE001 - missing, truncated or foreign: trace again
        return None


def cached_call(name: str, fn: Callable, *args, **static) -> Any:
    """``fn(*args, **static)``, with the traced program of ``fn`` kept across processes (module docstring).
    ``args``: a pytree of arrays (jax Partials with hashable functions included); ``static``: hashable options
    (part of the key). Inputs whose repr shows an object's address (a user's energy function) are not
    cached: an address names different functions in different processes. ``fn`` is traced at most once per key and machine while the compile cache is on."""
    d = program_cache_dir()
    if d is None:
        return fn(*args, **static)
    leaves, treedef = jax.tree_util.tree_flatten(args)
    if _IDENTITY_REPR in repr(treedef) or any(_IDENTITY_REPR in repr(v) for v in static.values()):
        return fn(*args, **static)  # a user function known only by its address: not the same across processes
    key = _key(name, treedef, leaves, static)
    call = _CALLS.get(key)
    if call is None:
        path = d / f"{name}-{key}.jaxexport"
        exp = _load(path)
        if exp is None:
            def flat(*lv):
                return fn(*jax.tree_util.tree_unflatten(treedef, lv), **static)

            avals = [jax.ShapeDtypeStruct(jax.numpy.shape(x), jax.numpy.result_type(x)) for x in leaves]
            exp = jax.export.export(jax.jit(flat))(*avals)
            try:
                data = bytes(exp.serialize())
            except ImportError:  # jax's serializer needs flatbuffers (a phonjax dependency); without it: uncached
                return fn(*args, **static)
            _atomic_write(path, data)
        call = _CALLS[key] = jax.jit(exp.call, compiler_options=kernel_compiler_options())
    return call(*leaves)


def cached_json(name: str, parts: tuple, compute: Callable[[], Any]) -> Any:
    """``compute()`` (a JSON-able value), kept in the program cache under ``name`` and ``parts`` (with the
    source fingerprint); computed anew when the cache is off or the entry unreadable."""
    d = program_cache_dir()
    if d is None:
        return compute()
    key = hashlib.sha256(json.dumps([name, [repr(p) for p in parts], _settings()]).encode()).hexdigest()[:40]
    path = d / f"{name}-{key}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        value = compute()
        _atomic_write(path, json.dumps(value).encode())
        return value
