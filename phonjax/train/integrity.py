"""Checksum manifests of checkpoint directories: written after a save, verified before a restore.

A manifest ``<step_dir>/phonjax-sha256.json`` maps every file below the step directory (relative POSIX
path) to ``[size in bytes, sha256 hex]``. It is written atomically (temporary file, fsync, rename) after
orbax has finished the step, so its presence marks a complete save; a truncated or overwritten file, a
missing or an extra one is reported by :func:`verify_manifest`.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

MANIFEST = "phonjax-sha256.json"


def _files(step_dir: Path) -> list[Path]:
    return sorted(p for p in step_dir.rglob("*") if p.is_file() and p.name != MANIFEST
                  and not p.name.startswith(f".{MANIFEST}"))


def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def write_manifest(step_dir: str | Path) -> Path:
    """Checksum every file of ``step_dir`` into its manifest (atomic); returns the manifest path."""
    step_dir = Path(step_dir)
    entries = {p.relative_to(step_dir).as_posix(): [p.stat().st_size, _sha256(p)] for p in _files(step_dir)}
    path = step_dir / MANIFEST
    tmp = step_dir / f".{MANIFEST}.tmp"
    with open(tmp, "w") as fh:
        json.dump({"format": 1, "files": entries}, fh, indent=0, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def has_manifest(step_dir: str | Path) -> bool:
    return (Path(step_dir) / MANIFEST).is_file()


def verify_manifest(step_dir: str | Path) -> str | None:
    """None when every file matches the manifest; otherwise why not, in a few words (the first problem)."""
    step_dir = Path(step_dir)
    try:
        entries = json.loads((step_dir / MANIFEST).read_text())["files"]
    except FileNotFoundError:
        return "no checksum manifest (its save did not finish)"
    except (OSError, ValueError, KeyError, TypeError):
        return f"unreadable {MANIFEST}"
    for rel, (size, digest) in sorted(entries.items()):
        p = step_dir / rel
        if not p.is_file():
            return f"{rel} is missing"
        actual = p.stat().st_size
        if actual != size:
            return f"{rel} has {actual} bytes, {size} were written (truncated?)"
        if _sha256(p) != digest:
            return f"{rel} does not match its sha256 checksum (bytes changed on disk)"
    extra = [p.relative_to(step_dir).as_posix() for p in _files(step_dir)
             if p.relative_to(step_dir).as_posix() not in entries]
    if extra:
        return f"{extra[0]} was not part of the saved checkpoint"
    return None
