"""The files :func:`phonjax.predict.predict` and :func:`~phonjax.predict.bands_from_phonopy` write: a tuple of
:class:`OutputWriter` records, each one file name and one function ``write(result, path)`` of the
:class:`~phonjax.predict.PredictResult`. A new output format is one writer function and one entry in
:data:`DEFAULT_WRITERS`; the result's ``files`` lists every writer's path before any is written.
"""
from __future__ import annotations

from dataclasses import dataclass
import json
from pathlib import Path
from typing import Callable

__all__ = ["OutputWriter", "DEFAULT_WRITERS", "FORCE_CONSTANTS", "write_outputs"]


@dataclass(frozen=True)
class OutputWriter:
    """name: the file name inside the output directory; write(result, path): writes it."""

    name: str
    write: Callable[[object, Path], object]


def _band_yaml(res, path: Path) -> None:
    from phonjax.io.band_yaml import write_band_yaml  # noqa: PLC0415
    write_band_yaml(path, res.band)


def _force_constants_hdf5(res, path: Path) -> None:
    from phonjax.io.phonopy import write_force_constants_hdf5  # noqa: PLC0415
    write_force_constants_hdf5(res.force_constants, path)


def _band_png(res, path: Path) -> None:
    from phonjax.plot import plot_band_structure  # noqa: PLC0415
    fc = res.force_constants
    title = f"{''.join(fc.primitive.symbols)}  (lr={res.lr}, {fc.supercell.crystal.n_atoms}-atom supercell)"
    plot_band_structure(res.band, path, reference=res.reference, reference_label="reference", title=title)


def _thermal_png(res, path: Path) -> None:
    from phonjax.plot import plot_thermal_properties  # noqa: PLC0415
    fc = res.force_constants
    plot_thermal_properties(res.thermal, path, title=f"{''.join(fc.primitive.symbols)}  (lr={res.lr}, "
                                                     f"mesh {'×'.join(str(m) for m in res.thermal.mesh)})")


def _summary_json(res, path: Path) -> None:
    path.write_text(json.dumps(res.as_dict(), indent=2, default=str) + "\n")


def _summary_txt(res, path: Path) -> None:
    path.write_text(res.summary_text() + "\n")


#: The force constants: written by ``predict`` as soon as they exist (it needs only ``result.force_constants``),
#: so that nothing computed is lost if a later step fails.
FORCE_CONSTANTS = OutputWriter("force_constants.hdf5", _force_constants_hdf5)

#: What ``phonjax predict`` / ``phonjax bands`` write, in this order (the summaries last: they list the files).
DEFAULT_WRITERS = (
    FORCE_CONSTANTS,
    OutputWriter("band.yaml", _band_yaml),
    OutputWriter("band.png", _band_png),
    OutputWriter("thermal.png", _thermal_png),
    OutputWriter("summary.json", _summary_json),
    OutputWriter("summary.txt", _summary_txt),
)


def write_outputs(res, writers=DEFAULT_WRITERS) -> None:
    """Run every writer on ``res`` into ``res.files[writer.name]`` (the output directory is created)."""
    for w in writers:
        path = Path(res.files[w.name])
        path.parent.mkdir(parents=True, exist_ok=True)
        w.write(res, path)
