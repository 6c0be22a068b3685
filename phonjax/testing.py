"""Public test helpers: compilation counting and finite-difference checks of force constants.

* :class:`CompilationCounter` / :func:`count_compilations`: counts XLA backend compilations (JAX's
  ``/jax/core/compile/backend_compile_duration`` monitoring event) inside a ``with`` block.
* :func:`fd_force_constants`: central finite differences of the forces −∂E/∂u (jax.grad of the energy), the
  reference that autodiff Hessians are checked against; :func:`fd_step_sweep` runs it for several steps.
"""
from __future__ import annotations

from contextlib import contextmanager

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["CompilationCounter", "count_compilations", "CompileStats", "fd_force_constants", "fd_step_sweep",
           "BACKEND_COMPILE_EVENT"]

BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
_TRACE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration", "/jax/core/compile/jaxpr_to_mlir_module_duration")
_CACHE_EVENTS = {"/jax/compilation_cache/cache_hits": "cache_hits",
                 "/jax/compilation_cache/cache_misses": "cache_misses",
                 "/jax/compilation_cache/compile_requests_use_cache": "cache_requests"}


class CompileStats:
    """Process-wide tally of JAX's monitoring events from :meth:`start` on: ``backend_compiles`` and
    ``backend_compile_s`` (XLA compilations incl. persistent-cache reads), ``trace_s`` (tracing + lowering),
    ``cache_requests`` / ``cache_hits`` / ``cache_misses`` (persistent compilation cache). Listeners cannot be
    removed in every JAX version, so one instance is meant to live for the whole process (benchmarks, child
    processes of tests)."""

    def __init__(self):
        self.backend_compiles = 0
        self.backend_compile_s = 0.0
        self.trace_s = 0.0
        self.cache_requests = self.cache_hits = self.cache_misses = 0

    def _duration(self, event, duration, **kwargs):
        if event == BACKEND_COMPILE_EVENT:
            self.backend_compiles += 1
            self.backend_compile_s += float(duration)
        elif event in _TRACE_EVENTS:
            self.trace_s += float(duration)

    def _event(self, event, **kwargs):
        name = _CACHE_EVENTS.get(event)
        if name is not None:
            setattr(self, name, getattr(self, name) + 1)

    def start(self) -> "CompileStats":
        jax.monitoring.register_event_duration_secs_listener(self._duration)
        jax.monitoring.register_event_listener(self._event)
        return self

    def as_dict(self) -> dict:
        return {"backend_compiles": self.backend_compiles, "backend_compile_s": round(self.backend_compile_s, 4),
                "trace_lower_s": round(self.trace_s, 4), "cache_requests": self.cache_requests,
                "cache_hits": self.cache_hits, "cache_misses": self.cache_misses}


class CompilationCounter:
    """``with CompilationCounter() as c: ...`` then ``c.count`` (number of XLA compilations in the block)."""

    def __init__(self):
        self.count = 0
        self._active = False

    def _listener(self, event, duration, **kwargs):
        if self._active and event == BACKEND_COMPILE_EVENT:
            self.count += 1

    def __enter__(self):
        self.count = 0
        self._active = True
        jax.monitoring.register_event_duration_secs_listener(self._listener)
        return self

    def __exit__(self, *exc):
        self._active = False
        try:
            jax.monitoring.unregister_event_duration_listener(self._listener)
        except Exception:  # pragma: no cover - older/newer JAX without unregister: stays inactive
            pass
        return False


@contextmanager
def count_compilations():
    """Context manager yielding a :class:`CompilationCounter`."""
    with CompilationCounter() as c:
        yield c


def fd_force_constants(energy_fn, positions, cell, rows, *, step: float = 1e-3) -> np.ndarray:
    """Central finite differences of forces: fc[i, j, a, b] ≈ −[F_jb(r + h e_ia) − F_jb(r − h e_ia)] / 2h.

    energy_fn(positions, cell) -> eV; rows: atom indices i (the home-cell atoms). Returns (len(rows), N, 3, 3).
    Error O(h²) plus rounding O(ε/h); use :func:`fd_step_sweep` to pick the step."""
    pos = np.asarray(positions, dtype=np.float64)
    grad = jax.jit(jax.grad(lambda x: energy_fn(x, jnp.asarray(cell))))
    out = np.zeros((len(rows), pos.shape[0], 3, 3))
    for k, i in enumerate(rows):
        for a in range(3):
            p, m = pos.copy(), pos.copy()
            p[i, a] += step
            m[i, a] -= step
            out[k, :, a, :] = (np.asarray(grad(jnp.asarray(p))) - np.asarray(grad(jnp.asarray(m)))) / (2 * step)
    return out


def fd_step_sweep(energy_fn, positions, cell, rows, reference, steps=(1e-2, 3e-3, 1e-3, 3e-4, 1e-4)) -> dict:
    """{step: max relative error of FD force constants vs ``reference`` (len(rows), N, 3, 3)}, relative to
    max |reference|."""
    ref = np.asarray(reference)
    scale = np.abs(ref).max()
    return {h: float(np.abs(fd_force_constants(energy_fn, positions, cell, rows, step=h) - ref).max() / scale)
            for h in steps}
