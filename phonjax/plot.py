"""Plots (the only library module that imports matplotlib; Agg backend, files PNG/PDF by extension).
The figures of the benchmark reports are drawn in ``benchmarks/`` (e.g. ``benchmarks/_lif_figures.py``)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["plot_band_structure", "plot_dos", "plot_band_comparison", "plot_learning_curve", "path_ticks"]

_UNIT_LABEL = {"THz": "Frequency (THz)", "cm-1": "Frequency (cm$^{-1}$)", "meV": "Energy (meV)"}


def _plt():
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    return plt


def _segments(distances, segment_nqpoint):
    """Index ranges of the path segments (lines are not drawn across segment ends)."""
    out, k = [], 0
    for m in segment_nqpoint or (len(distances),):
        out.append((k, k + int(m)))
        k += int(m)
    return out


def plot_band_structure(band, path=None, *, reference=None, reference_label: str = "reference",
                        label: str = "phonjax", title: str | None = None, unit: str | None = None, ax=None,
                        color: str = "C0", ref_color: str = "k"):
    """Plot a :class:`phonjax.bands.BandStructure` (special-point ticks, units on the axis, zero line), with
    an optional reference dispersion overlaid (a phonopy ``band.yaml`` path, a :class:`phonjax.io.band_yaml.BandData`
    or another BandStructure; drawn against its own distances rescaled to this path's length). Saves to
    ``path`` (PNG/PDF by extension) when given; returns the figure."""
    plt = _plt()
    unit = unit or getattr(band, "unit", "THz")
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(7, 4.5))
    else:
        fig = ax.figure
    d = np.asarray(band.distances)
    f = np.asarray(band.frequencies)
    for a, b in _segments(d, band.segment_nqpoint):
        ax.plot(d[a:b], f[a:b], color=color, lw=1.2)
    handles = [plt.Line2D([], [], color=color, lw=1.2, label=label)]
    if reference is not None:
        ref = reference
        if isinstance(ref, (str, Path)):
            from phonjax.io.band_yaml import read_band_yaml
            ref = read_band_yaml(ref)
        rd = np.asarray(ref.distances, dtype=np.float64)
        if rd.size and np.isfinite(rd).all() and rd[-1] > 0 and d[-1] > 0:
            rd = rd * (d[-1] / rd[-1])
        else:
            rd = np.linspace(0, d[-1], len(ref.frequencies))
        rf = np.asarray(ref.frequencies)
        if unit != "THz" and getattr(ref, "unit", "THz") == "THz":
            from phonjax.dynmat import convert_units
            rf = convert_units(rf, unit)
        for a, b in _segments(rd, getattr(ref, "segment_nqpoint", ())):
            ax.plot(rd[a:b], rf[a:b], color=ref_color, lw=0.9, ls="--")
        handles.append(plt.Line2D([], [], color=ref_color, lw=0.9, ls="--", label=reference_label))
    pos = list(getattr(band, "label_positions", ()))
    labs = list(getattr(band, "labels", ()))
    for x in pos:
        ax.axvline(x, color="0.7", lw=0.6)
    if pos:
        ax.set_xticks(pos)
        ax.set_xticklabels(labs)
    ax.axhline(0.0, color="0.5", lw=0.6, ls=":")
    ax.set_xlim(d[0], d[-1])
    ax.set_ylabel(_UNIT_LABEL.get(unit, unit))
    ax.set_xlabel("Wave vector")
    if title:
        ax.set_title(title)
    if reference is not None:
        ax.legend(handles=handles, loc="best", fontsize=8)
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.tight_layout()
        fig.savefig(path, dpi=150)
    if own and path is not None:
        plt.close(fig)
    return fig


def plot_dos(dos, path=None, *, ax=None, title: str | None = None):
    """Plot a :class:`phonjax.bands.PhononDOS` (THz)."""
    plt = _plt()
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(5, 4))
    else:
        fig = ax.figure
    ax.plot(dos.frequencies, dos.dos, color="C0")
    ax.set_xlabel("Frequency (THz)")
    ax.set_ylabel("DOS (states/THz/cell)")
    if title:
        ax.set_title(title)
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.tight_layout()
        fig.savefig(path, dpi=150)
        if own:
            plt.close(fig)
    return fig


def plot_thermal_properties(tp, path=None, *, title: str | None = None):
    """F (kJ/mol), S and C_V (J/(K·mol)) vs T of a :class:`phonjax.thermal.ThermalProperties`, two panels.
    Returns the figure; saved to ``path`` when given."""
    plt = _plt()
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.8))
    a.plot(tp.temperatures, tp.free_energy, color="C0")
    a.set_ylabel("F (kJ/mol)")
    b.plot(tp.temperatures, tp.entropy, color="C1", label="S")
    b.plot(tp.temperatures, tp.heat_capacity, color="C2", label="$C_V$")
    b.set_ylabel("J/(K·mol)")
    b.legend(loc="best", fontsize=8)
    for ax in (a, b):
        ax.set_xlabel("T (K)")
        ax.set_xlim(tp.temperatures.min(), tp.temperatures.max())
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
        plt.close(fig)
    return fig


def plot_band_comparison(pred, ref, path: str | Path | None = None, *, labels=("prediction", "DFPT"),
                         title: str | None = None):
    """Overlay two dispersions on the reference's path axis (band.yaml paths, BandData or BandStructure).
    Returns the figure; saved to ``path`` when given."""
    from phonjax.compare import _as_band

    plt = _plt()
    p, r = _as_band(pred), _as_band(ref)
    x = r.distances
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(x, r.frequencies, color="k", lw=1.5)
    ax.plot(x, p.frequencies, color="tab:red", lw=1.0, ls="--")
    ax.plot([], [], color="k", label=labels[1])
    ax.plot([], [], color="tab:red", ls="--", label=labels[0])
    ticks, names = path_ticks(r)
    for t in ticks:
        ax.axvline(t, color="0.7", lw=0.5)
    if ticks:
        ax.set_xticks(ticks, names)
    ax.set_xlim(x[0], x[-1])
    ax.axhline(0, color="0.7", lw=0.5)
    ax.set_ylabel("Frequency (THz)")
    if title:
        ax.set_title(title)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=150)
    return fig


def plot_learning_curve(history, path) -> Path:
    """Train/valid loss and validation E/F MAE per epoch (log scale), stage boundaries dotted.
    history: rows of metrics as written to metrics.csv. Saved to ``path``."""
    plt = _plt()
    rows = list(history)
    x, offset, prev, last = [], 0, None, 0  # epochs, counted on across stages
    for r in rows:
        if prev is not None and r.get("stage") != prev:
            offset += last
        x.append(offset + r.get("epoch", 0))
        prev, last = r.get("stage"), r.get("epoch", 0)
    x = np.asarray(x)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for key, lab in (("train_loss", "train loss"), ("valid_loss", "valid loss")):
        axes[0].semilogy(x, [r.get(key, np.nan) for r in rows], label=lab)
    axes[0].set_xlabel("epoch")
    axes[0].legend()
    axes[1].semilogy(x, [1000 * r.get("valid_e_mae", np.nan) for r in rows], label="E MAE (meV/atom)")
    axes[1].semilogy(x, [1000 * r.get("valid_f_mae", np.nan) for r in rows], label="F MAE (meV/Å)")
    axes[1].legend()
    axes[1].set_xlabel("epoch")
    for k, r in enumerate(rows[1:], start=1):  # stage boundaries
        if r.get("stage") != rows[k - 1].get("stage"):
            for ax in axes:
                ax.axvline(x[k], color="grey", ls=":")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def path_ticks(ref):
    """(tick positions, names) of a :class:`~phonjax.io.band_yaml.BandData`'s segment ends ("X|K" at a break;
    Γ in TeX)."""
    x = np.asarray(ref.distances)
    if not ref.segment_nqpoint:
        return [], []
    ends = np.cumsum(ref.segment_nqpoint)
    ticks = [x[0]] + [x[e - 1] for e in ends]
    names = [ref.labels[0][0] if ref.labels else ""]
    for i in range(len(ends)):
        lab = ref.labels[i][1] if ref.labels else ""
        if i + 1 < len(ends) and ref.labels and ref.labels[i + 1][0] != lab:
            lab = f"{lab}|{ref.labels[i + 1][0]}"
        names.append(lab)
    return ticks, [n.replace("GAMMA", r"$\Gamma$").replace("Γ", r"$\Gamma$") for n in names]
