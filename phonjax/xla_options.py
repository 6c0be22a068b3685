"""XLA compile options of phonjax's kernels (force constants, model energy/forces, training steps): one home.

On CPU, jaxlib's XLA lowers many small ops into YNNPACK fusions, each a YNN subgraph that is rebuilt whenever
the executable is loaded — also from the persistent compilation cache. A NequIP force-constant kernel holds
thousands of them, so a warm ``phonjax predict`` spent seconds loading it (``benchmarks/bench_cpu_fusions.py``
measures compile, load and run with and without). phonjax's kernels are compiled without them
(``xla_cpu_experimental_ynn_fusion_type`` set to none); XLA's own emitters compute the same operations
(results equal to float rounding). Other backends get no options. A jaxlib that does not know the option is
detected once and gets none either.
"""
from __future__ import annotations

from functools import lru_cache

import jax

__all__ = ["NO_YNN", "accepted", "kernel_compiler_options", "kernel_jit"]

#: YNNPACK fusions off (an empty list of fusion types replaces jaxlib's default list)
NO_YNN = {"xla_cpu_experimental_ynn_fusion_type": ""}


@lru_cache(maxsize=None)
def accepted(backend: str, options: tuple) -> bool:
    """Whether this jaxlib compiles with ``options`` ((name, value) pairs) on ``backend``; probed once with a
    trivial program (an unknown option fails at compile time)."""
    try:
        jax.jit(lambda x: x + 1, compiler_options=dict(options)).lower(jax.numpy.float32(0)).compile()
        return True
    except Exception:  # noqa: BLE001 - jaxlib raises several types for an unknown option
        return False


def kernel_compiler_options() -> dict | None:
    """The compile options for phonjax's kernels on the default backend (None: jaxlib's defaults)."""
    backend = jax.default_backend()
    if backend != "cpu" or not accepted(backend, tuple(NO_YNN.items())):
        return None
    return dict(NO_YNN)


class kernel_jit:  # noqa: N801 - used like jax.jit
    """``jax.jit(fun, **jit_kwargs)`` with :func:`kernel_compiler_options`, resolved at the first call (the
    backend is not known at import, and importing must not start it). Called inside another traced function
    it is a plain nested jit: compile options belong to the outermost one (JAX refuses them on a nested jit)."""

    def __init__(self, fun, **jit_kwargs):
        self._fun, self._kw, self._jitted, self._nested = fun, jit_kwargs, None, None
        self.__wrapped__, self.__doc__, self.__name__ = fun, fun.__doc__, getattr(fun, "__name__", "kernel")

    @property
    def jitted(self):
        if self._jitted is None:
            self._jitted = jax.jit(self._fun, compiler_options=kernel_compiler_options(), **self._kw)
        return self._jitted

    def __call__(self, *args, **kwargs):
        if any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves((args, kwargs))):
            if self._nested is None:
                self._nested = jax.jit(self._fun, **self._kw)
            return self._nested(*args, **kwargs)
        return self.jitted(*args, **kwargs)

    def lower(self, *args, **kwargs):
        return self.jitted.lower(*args, **kwargs)

    def _cache_size(self) -> int:
        return 0 if self._jitted is None else self._jitted._cache_size()
