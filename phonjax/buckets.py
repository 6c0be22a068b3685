"""Padding policy: the static shapes that let one compiled kernel serve many inputs (the one home of this
decision; every padded kernel takes its sizes from here).

Two kinds of length are padded, for two different reasons:

- **q lists** (C(q), Ewald sums, eigh, sharded frequencies): :func:`q_bucket`, powers of two from 16 up to 4096,
  then multiples of 1024 (at most 25 % padding, 10 % from 10,240 q on). The chunked kernels take power-of-two
  chunks that divide the bucket (:func:`q_chunk`); padded q-points cost wasted FLOPs in every q kernel, which
  is why the step above 4096 is fine.
- **graph capacities** (atoms, edges of the network's input): :func:`capacity_bucket`, ≥ n and at most 12.5 %
  larger, from a sparse geometric set (multiples of 2^(⌊log₂ n⌋ − 3)). Edges dominate the memory of second
  derivatives, so the padding is kept tight while a few more or fewer edges still reuse a kernel.
"""
from __future__ import annotations

import math

__all__ = ["q_bucket", "q_chunk", "capacity_bucket", "Q_BUCKET_MIN", "Q_BUCKET_MAX_POW2", "Q_BUCKET_STEP"]

#: smallest padded q-list length
Q_BUCKET_MIN = 16
#: above this, q lists are padded to multiples of :data:`Q_BUCKET_STEP` instead of powers of two
Q_BUCKET_MAX_POW2 = 4096
#: the padding step of q lists longer than :data:`Q_BUCKET_MAX_POW2`
Q_BUCKET_STEP = 1024


def q_bucket(n: int) -> int:
    """Padded length for n q-points: the next power of two ≥ max(n, 16) up to 4096, then multiples of 1024."""
    n = max(int(n), 1)
    if n <= Q_BUCKET_MAX_POW2:
        return max(Q_BUCKET_MIN, 1 << (n - 1).bit_length())
    return -(-n // Q_BUCKET_STEP) * Q_BUCKET_STEP


def q_chunk(nb: int, limit: int) -> int:
    """Chunk length for a q kernel over a bucket of nb q-points: nb itself when nb ≤ limit, else the largest
    power of two ≤ ``limit`` that divides nb (≥ 1)."""
    nb, limit = int(nb), max(int(limit), 1)
    if nb <= limit:
        return nb
    return min(1 << (limit.bit_length() - 1), nb & -nb)


def capacity_bucket(n: int, minimum: int = 16) -> int:
    """Round ``n`` up to a bucketed capacity: ≥ n, at most 12.5 % larger, from a sparse geometric set
    (multiples of 2^(⌊log2 n⌋ − 3)), so that small changes of n usually keep the same capacity."""
    n = max(int(n), 1)
    if n <= minimum:
        return minimum
    step = 2 ** max(int(math.floor(math.log2(n))) - 3, 0)
    return int(-(-n // step) * step)
