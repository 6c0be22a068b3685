"""Progress of a phonon job on stderr: one tqdm bar, reset at each stage (model, force constants per batch of
Hessian-vector products, bands, writing), cleared before anything else is printed.

Progress moves even inside one long kernel call (compiling, or all Hessian-vector products vmapped in one call,
which shares the forward pass between directions and is why the force-constant step is not split into small
batches just to report them): a heartbeat thread prints "still working" lines (logs, pipes) or refreshes the
bar's clock (terminals) every ``heartbeat_s`` seconds without news."""
from __future__ import annotations

import sys
import threading
import time

__all__ = ["Progress", "HEARTBEAT_S"]

#: Seconds without news after which the current stage reports that it is still working.
HEARTBEAT_S = 15.0


class Progress:
    """Progress on stderr (``show=False``: silent): a tqdm bar on a terminal, one line per stage / batch
    otherwise (logs, pipes). ``stage(name, total, unit)`` starts a stage; ``advance(n)``; ``directions(done,
    total)`` is the force-constant callback; ``close()`` stops the heartbeat and clears the bar so what follows
    starts its own line."""

    def __init__(self, show: bool, heartbeat_s: float = HEARTBEAT_S):
        self._lines = bool(show) and not sys.stderr.isatty()
        self._t0 = self._news = time.perf_counter()
        self._stage, self._stage_t0 = None, self._t0
        self._bar = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._beat = None
        if show and not self._lines:
            from tqdm.auto import tqdm
            self._bar = tqdm(total=1, desc="phonjax", unit="step", leave=False, file=sys.stderr)
        if show:
            self._beat = threading.Thread(target=self._heartbeat, args=(float(heartbeat_s),), daemon=True)
            self._beat.start()

    def _heartbeat(self, every: float) -> None:
        while not self._stop.wait(min(every, 1.0) / 4):
            now = time.perf_counter()
            if self._stage is None or now - self._news < every:
                continue
            with self._lock:
                if self._bar is not None:
                    self._bar.refresh()  # the bar's elapsed time moves
                    self._news = now
                    continue
            self._line(f"{self._stage}: still working ({now - self._stage_t0:.0f} s in this stage)")

    def _line(self, text: str) -> None:
        with self._lock:
            self._news = time.perf_counter()
            if self._lines:
                print(f"phonjax: [{self._news - self._t0:7.1f} s] {text}", file=sys.stderr, flush=True)

    def stage(self, name: str, total: int = 1, unit: str = "step") -> None:
        self._stage, self._stage_t0 = name.split(" (")[0], time.perf_counter()
        self._line(name)
        if self._bar is not None:
            with self._lock:
                self._bar.reset(total=total)
                self._bar.unit = unit
                self._bar.set_description(name)

    def advance(self, n: int = 1) -> None:
        if self._bar is not None:
            with self._lock:
                self._bar.update(n)

    def directions(self, done: int, total: int) -> None:
        """Force-constant callback: ``done`` of ``total`` Hessian-vector products finished (0 before the first
        batch, whose time includes compiling the kernel)."""
        if done == 0:
            self.stage("force constants (compiling, then Hessian-vector products)", total, "HVP")
            return
        self._line(f"force constants: {done}/{total} Hessian-vector products")
        if self._bar is not None:
            with self._lock:
                self._bar.set_description("force constants")
                self._bar.update(done - self._bar.n)

    def close(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
