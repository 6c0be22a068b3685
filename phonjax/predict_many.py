"""Many structures per run: :func:`predict` over a list of structures with the model loaded once.

Inputs (:func:`expand_structures`): structure files, directories (every structure file in them, sorted; files
named like BORN are Born data, not structures) and multi-frame files (every frame, named ``<stem>_<k>``).
Outputs: one folder per structure under ``out_dir`` (``out_dir/<name>/``: band.yaml, summary.json, ... as
:func:`phonjax.predict.predict` writes them) and ``out_dir/summary.jsonl``, one line per structure: ``name``,
``source``, ``status`` ("ok" | "failed" | "skipped"), and the structure's summary or its one-line error.

Resumable: a structure whose folder has a summary.json from an earlier run is skipped (a crash loses nothing
finished; the structure that was running is redone). A failed structure (unreadable file, unknown element,
too small a supercell, ...) is recorded and the run goes on. Compiled kernels are reused across structures whose
padded shapes agree (:mod:`phonjax.buckets`), and across runs through the compilation cache.

Born data: ``born`` None (no long-range correction unless a model brings its own), a BORN/QE file used for
every structure (only sensible when they are the same compound), or a directory holding ``<name>.BORN`` per
structure (structures without one get none, with the usual warning for polar-looking compounds).
"""
from __future__ import annotations

from dataclasses import dataclass
import json
from pathlib import Path
import sys
import warnings

__all__ = ["StructureInput", "expand_structures", "predict_many", "ManyResult", "SUMMARY_JSONL"]

SUMMARY_JSONL = "summary.jsonl"


@dataclass(frozen=True)
class StructureInput:
    """name: output folder name (unique); source: the file it came from; atoms: ase.Atoms or None when the
    file could not be read (then ``error`` says why)."""

    name: str
    source: str
    atoms: object = None
    error: str | None = None


@dataclass(frozen=True)
class ManyResult:
    """out_dir; records: one dict per structure, as written to summary.jsonl; ``count(status)`` per status."""

    out_dir: Path
    records: tuple

    def count(self, status: str) -> int:
        return sum(r["status"] == status for r in self.records)


def _is_born_name(p: Path) -> bool:
    return "BORN" in p.name.upper()


def _read_frames(path: Path) -> list[StructureInput]:
    import ase.io
    try:
        frames = ase.io.read(str(path), index=":")
    except Exception as e:  # noqa: BLE001 - any reader error becomes this structure's failure
        return [StructureInput(path.stem, str(path), None, f"cannot read {path.name}: {type(e).__name__}: {e}")]
    if len(frames) == 1:
        return [StructureInput(path.stem, str(path), frames[0])]
    return [StructureInput(f"{path.stem}_{k}", f"{path}@{k}", a) for k, a in enumerate(frames)]


def expand_structures(paths) -> list[StructureInput]:
    """StructureInputs from files, directories and multi-frame files (see module docstring); names made unique
    by a numeric suffix. A path that does not exist is an error (FileNotFoundError)."""
    out: list[StructureInput] = []
    for p in map(Path, paths):
        if not p.exists():
            raise FileNotFoundError(f"structure file not found: {p}")
        files = sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith(".")
                       and not _is_born_name(f)) if p.is_dir() else [p]
        for f in files:
            out.extend(_read_frames(f))
    seen: dict[str, int] = {}
    unique = []
    for s in out:
        k = seen.get(s.name, 0)
        seen[s.name] = k + 1
        unique.append(s if k == 0 else StructureInput(f"{s.name}-{k}", s.source, s.atoms, s.error))
    return unique


def _born_for(born, name: str):
    if born is None:
        return None
    b = Path(born) if isinstance(born, (str, Path)) else None
    if b is not None and b.is_dir():
        f = b / f"{name}.BORN"
        return f if f.is_file() else None
    return born


def _done(folder: Path) -> dict | None:
    try:
        return json.loads((folder / "summary.json").read_text())
    except (OSError, ValueError):
        return None


def _note(text: str, progress: bool) -> None:
    if progress:
        print(f"phonjax: {text}", file=sys.stderr, flush=True)


def predict_many(structures, model=None, supercell=None, *, born=None, out_dir="out", progress: bool = True,
                 **options) -> ManyResult:
    """:func:`phonjax.predict.predict` for every structure of ``structures`` (paths, see module docstring, or
    a list of :class:`StructureInput`), the model loaded once. ``options``: the keyword arguments of
    ``predict`` other than structure/model/supercell/born/out_dir/progress (a wrong name is refused before
    any work)."""
    import inspect

    from phonjax.predict import predict, resolve_model

    allowed = set(inspect.signature(predict).parameters) - {"structure", "model", "supercell", "born", "out_dir",
                                                            "progress"}
    bad = sorted(set(options) - allowed)
    if bad:
        raise TypeError(f"predict_many got unknown option(s) {', '.join(bad)}")
    items = structures if structures and isinstance(structures[0], StructureInput) else expand_structures(structures)
    if not items:
        raise ValueError("no structure files in " + ", ".join(map(str, structures)) if structures
                         else "no structures given")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    m = resolve_model(model)
    records = []
    with open(out / SUMMARY_JSONL, "a") as log:
        for k, s in enumerate(items, 1):
            folder = out / s.name
            rec = {"name": s.name, "source": s.source}
            prev = _done(folder)
            if prev is not None:
                rec.update(status="skipped", reason="finished in an earlier run", summary=prev)
            elif s.error is not None:
                rec.update(status="failed", error=s.error)
            else:
                _note(f"structure {k}/{len(items)}: {s.name}", progress)
                rec.update(_one(predict, s, m, supercell, _born_for(born, s.name), folder, progress, options))
            if rec["status"] == "failed":
                _note(f"error: {s.name}: {rec['error']}", progress)
            records.append(rec)
            log.write(json.dumps(rec, default=str) + "\n")
            log.flush()
    return ManyResult(out, tuple(records))


def _one(predict, s: StructureInput, model, supercell, born, folder: Path, progress: bool, options) -> dict:
    from phonjax.checks import USER_ERRORS
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = predict(s.atoms, model, supercell, born=born, out_dir=folder, progress=progress, **options)
        for w in caught:
            _note(f"{s.name}: {w.message}", progress)
        return {"status": "ok", "summary": json.loads((folder / "summary.json").read_text()),
                "warnings": [str(w.message) for w in caught], "files": [str(f) for f in res.files]}
    except USER_ERRORS as e:
        return {"status": "failed", "error": f"{type(e).__name__}: {e}"}
