"""``none``: the force constants as they are, nothing added."""
from __future__ import annotations

import numpy as np

from phonjax.longrange.correction import BuildRequest, Correction


def build(req: BuildRequest) -> Correction:
    return Correction("none", req.fc, np.zeros_like(req.fc), req.born, None, False, {"mode": "none"})
