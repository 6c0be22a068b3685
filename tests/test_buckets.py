"""The one padding policy: every padded kernel takes its sizes from phonjax.buckets."""
from __future__ import annotations

import numpy as np

from phonjax import buckets


def test_every_padded_kernel_uses_the_one_policy():
    from phonjax import fourier, graph
    from phonjax.longrange import ewald
    assert fourier.bucket is buckets.q_bucket and ewald.pad_bucket is buckets.q_bucket
    assert graph.bucket is buckets.capacity_bucket


def test_q_bucket_and_capacity_bucket_properties():
    for n in list(range(1, 300)) + [4095, 4096, 4097, 10000]:
        b = buckets.q_bucket(n)
        assert b >= max(n, buckets.Q_BUCKET_MIN)
        if b <= buckets.Q_BUCKET_MAX_POW2:
            assert b & (b - 1) == 0                     # a power of two: power-of-two chunks divide it
        else:
            assert b % buckets.Q_BUCKET_STEP == 0 and b < n + buckets.Q_BUCKET_STEP
    for nb in [16, 4096, 5120, 10240, 12288, 65536]:
        for limit in [1, 7, 1000, 2048, 4096, 10 ** 6]:
            c = buckets.q_chunk(nb, limit)
            assert nb % c == 0 and (c == nb or (c <= limit and c & (c - 1) == 0))
    caps = np.array([buckets.capacity_bucket(n) for n in range(17, 5000)])
    ns = np.arange(17, 5000)
    assert np.all(caps >= ns) and np.all(caps <= 1.125 * ns)
    assert len(set(caps.tolist())) < len(ns) / 5          # sparse: neighbouring sizes share a capacity
