"""Figures of the LiF/MgO accuracy report (``benchmarks/lif_accuracy.py`` → reports/): dispersion panels on a
reference path and convergence curves. Benchmark-only, so they live here, not in ``phonjax.plot``."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from phonjax.plot import path_ticks


def _plt():
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    return plt


def _segments(segment_nqpoint, n: int):
    """Index ranges of the path segments (lines are not drawn across segment ends)."""
    ends = np.cumsum(segment_nqpoint or (n,))
    return list(zip(np.r_[0, ends[:-1]], ends))


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    _plt().close(fig)
    return path


def plot_dispersion_panels(reference, panels, path, *, ncols: int = 3, title: str | None = None,
                           reference_label: str = "DFPT"):
    """A grid of dispersions on the reference's path: each panel (panel_title, {label: freqs (nq, nb) THz})
    overlays its curves (colours C0, C1, ...) on the reference (:class:`phonjax.io.band_yaml.BandData`, black
    dots). Lines are not drawn across path breaks. Saved to ``path``; returns the path."""
    plt = _plt()
    ref = reference
    x = np.asarray(ref.distances)
    rf = np.asarray(ref.frequencies)
    n = len(panels)
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.3 * nrows), sharey=True, squeeze=False)
    segs = _segments(ref.segment_nqpoint, len(x))
    ticks, names = path_ticks(ref)
    for k, (ptitle, curves) in enumerate(panels):
        ax = axes[k // ncols, k % ncols]
        ax.plot(x, rf, "k.", ms=1.6)
        handles = [plt.Line2D([], [], color="k", marker=".", ls="", label=reference_label)]
        for c, (lab, f) in enumerate(curves.items()):
            f = np.asarray(f)
            for a, b in segs:
                ax.plot(x[a:b], f[a:b], color=f"C{c}", lw=0.9)
            handles.append(plt.Line2D([], [], color=f"C{c}", lw=0.9, label=lab))
        for t in ticks:
            ax.axvline(t, color="0.7", lw=0.5)
        if ticks:
            ax.set_xticks(ticks, names)
        ax.axhline(0, color="0.7", lw=0.5)
        ax.set_xlim(x[0], x[-1])
        ax.set_title(ptitle, fontsize=8)
        ax.legend(handles=handles, fontsize=6, loc="lower right")
        if k % ncols == 0:
            ax.set_ylabel("Frequency (THz)")
    for k in range(n, nrows * ncols):
        axes[k // ncols, k % ncols].axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def plot_convergence(x, series, path, *, xlabel: str, ylabel: str, title: str | None = None, vlines=None,
                     hline: float | None = None, logy: bool = False):
    """Lines with markers, one per ``series`` entry {label: y (len(x),)} (NaN = not computed); ``vlines``
    {label: x} marks rules (dotted), ``hline`` a tolerance (dashed). Saved to ``path``; returns the path."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for lab, y in series.items():
        ax.plot(x, y, marker="o", ms=4, label=lab)
    for c, (lab, xv) in enumerate((vlines or {}).items()):
        ax.axvline(xv, color=f"C{c + len(series)}", ls=":", label=lab)
    if hline is not None:
        ax.axhline(hline, color="0.4", ls="--", lw=0.8)
    if logy:
        ax.set_yscale("log")
    if len(x) and all(float(v).is_integer() for v in x):
        ax.set_xticks([int(v) for v in x])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)
