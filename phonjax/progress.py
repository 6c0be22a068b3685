"""Progress of a phonon job on stderr: one tqdm bar, reset at each stage (model, force constants per batch of
Hessian-vector products, bands, writing), cleared before anything else is printed."""
from __future__ import annotations

import math
import sys
import time

__all__ = ["Progress", "hvp_chunk"]

#: Batches of Hessian-vector products the force-constant step is split into when progress is shown.
PROGRESS_BATCHES = 8


def hvp_chunk(n_directions: int, batches: int = PROGRESS_BATCHES) -> int:
    """Directions per batch so that ``n_directions`` are done in about ``batches`` equal-shape batches (the last
    one padded), each a call of the same compiled kernel."""
    n = max(1, int(n_directions))
    return math.ceil(n / min(n, batches))


class Progress:
    """Progress on stderr (``show=False``: silent): a tqdm bar on a terminal, one line per stage / batch
    otherwise (logs, pipes). ``stage(name, total, unit)`` starts a stage; ``advance(n)``; ``directions(done,
    total)`` is the force-constant callback; ``close()`` clears the bar so what follows starts its own line."""

    def __init__(self, show: bool):
        self._lines = bool(show) and not sys.stderr.isatty()
        self._t0 = time.perf_counter()
        self._bar = None
        if show and not self._lines:
            from tqdm.auto import tqdm
            self._bar = tqdm(total=1, desc="phonjax", unit="step", leave=False, file=sys.stderr)

    def _line(self, text: str) -> None:
        if self._lines:
            print(f"phonjax: [{time.perf_counter() - self._t0:7.1f} s] {text}", file=sys.stderr, flush=True)

    def stage(self, name: str, total: int = 1, unit: str = "step") -> None:
        self._line(name)
        if self._bar is not None:
            self._bar.reset(total=total)
            self._bar.unit = unit
            self._bar.set_description(name)

    def advance(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def directions(self, done: int, total: int) -> None:
        """Force-constant callback: ``done`` of ``total`` Hessian-vector products finished (0 before the first
        batch, whose time includes compiling the kernel)."""
        if done == 0:
            self.stage("force constants (compiling, then batches of Hessian-vector products)", total, "HVP")
            return
        self._line(f"force constants: {done}/{total} Hessian-vector products")
        if self._bar is not None:
            self._bar.set_description("force constants")
            self._bar.update(done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
