"""The one way the study benchmarks write their report pair (``<stem>.json`` with every number, ``<stem>.md`` made
from it) and rewrite the markdown from the json alone (``--markdown-only``: a wording change needs no rerun)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable


def write_report(out: Path, stem: str, res: dict, markdown: Callable[[dict], str]) -> Path:
    """Write ``out/<stem>.json`` and ``out/<stem>.md``; returns the markdown path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(res, indent=1, default=str) + "\n")
    (out / f"{stem}.md").write_text(markdown(res))
    return out / f"{stem}.md"


def rewrite_markdown(out: Path, stem: str, markdown: Callable[[dict], str], reading=None) -> int:
    """``out/<stem>.md`` again from ``out/<stem>.json`` (its ``reading`` recomputed when ``reading`` is given)."""
    res = json.loads((Path(out) / f"{stem}.json").read_text())
    if reading is not None:
        res["reading"] = reading(res)
    (Path(out) / f"{stem}.md").write_text(markdown(res))
    return 0


def add_report_args(ap, stem: str, root: Path) -> None:
    """The options every study shares: ``--cache`` (force constants, the polar benchmark's), ``--out`` (reports/)
    and ``--markdown-only``."""
    ap.add_argument("--cache", type=Path, default=root / "out" / "polar" / "cache")
    ap.add_argument("--out", type=Path, default=root / "reports")
    ap.add_argument("--markdown-only", action="store_true", help=f"rewrite {stem}.md from {stem}.json")
