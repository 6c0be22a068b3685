"""Padded periodic graphs: neighbour list vs ASE, bucketing, batching, safe padding, strain derivatives.
Runtime ≈ 10 s on 2 cores."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ase.build import bulk
from ase.neighborlist import neighbor_list as ase_neighbor_list

import phonjax  # noqa: F401
from phonjax.graph import GraphError, bucket, build_graph, edge_vectors, neighbor_list, pad_positions


def _triclinic():
    rng = np.random.default_rng(3)
    a = bulk("LiF", "rocksalt", a=4.03).repeat((2, 1, 1))
    a.set_cell(a.cell.array + rng.normal(0, 0.2, (3, 3)), scale_atoms=True)
    a.positions += rng.normal(0, 0.05, a.positions.shape)
    return a


def test_neighbor_list_matches_ase():
    atoms = _triclinic()
    i, j, S = neighbor_list(atoms.positions, atoms.cell.array, 5.0)
    ia, ja, Sa = ase_neighbor_list("ijS", atoms, 5.0)
    mine = sorted(zip(i.tolist(), j.tolist(), map(tuple, S.tolist())))
    ref = sorted(zip(ia.tolist(), ja.tolist(), map(tuple, Sa.tolist())))
    assert mine == ref
    vec = atoms.positions[j] - atoms.positions[i] + S @ atoms.cell.array
    assert np.all(np.linalg.norm(vec, axis=1) < 5.0)


def test_too_close_and_bad_input():
    with pytest.raises(GraphError, match="0.3"):
        neighbor_list([[0, 0, 0], [0.1, 0, 0]], np.eye(3) * 5, 3.0)
    with pytest.raises(GraphError, match="singular"):
        neighbor_list([[0, 0, 0]], np.zeros((3, 3)), 3.0)
    with pytest.raises(GraphError, match="NaN"):
        neighbor_list([[np.nan, 0, 0]], np.eye(3), 3.0)


def test_bucket_is_stable_and_bounded():
    for n in [1, 15, 16, 17, 100, 1000, 12345]:
        b = bucket(n)
        assert b >= n and (n <= 16 or b <= 1.125 * n + 1)
    # small changes usually keep the bucket
    assert bucket(1000) == bucket(1010)


def test_batch_layout_and_padding():
    a1, a2 = bulk("LiF", "rocksalt", a=4.03), _triclinic()
    g = build_graph([a1, a2], [np.array([0, 1]), np.array([0, 1] * 2)], 4.0, n_graphs=3)
    assert g.n_graphs == 3 and g.graph_mask.tolist() == [True, True, False]
    assert g.node_graph[:6].tolist() == [0, 0, 1, 1, 1, 1]
    assert int(g.node_mask.sum()) == 6 and g.n_node_capacity >= 7
    n1 = len(neighbor_list(a1.positions, a1.cell.array, 4.0)[0])
    assert int(g.edge_mask.sum()) == n1 + len(neighbor_list(a2.positions, a2.cell.array, 4.0)[0])
    # edges of graph 1 connect nodes of graph 1 only
    recv = np.asarray(g.receivers)[np.asarray(g.edge_mask)]
    send = np.asarray(g.senders)[np.asarray(g.edge_mask)]
    assert np.all(np.asarray(g.node_graph)[recv] == np.asarray(g.node_graph)[send])
    with pytest.raises(GraphError, match="too small"):
        build_graph([a1], [np.array([0, 1])], 4.0, n_edges=3)


def test_edge_vectors_and_safe_padding_derivatives():
    atoms = _triclinic()
    n_e = len(neighbor_list(atoms.positions, atoms.cell.array, 4.0)[0])
    g = build_graph([atoms], [np.zeros(len(atoms), int)], 4.0, n_edges=n_e + 20)
    assert g.n_node_capacity > len(atoms)  # there are padding nodes and edges
    pos = jnp.asarray(pad_positions(atoms.positions, g.n_node_capacity))
    cell = jnp.asarray(atoms.cell.array)
    vec, _ = edge_vectors(g, pos, cell)
    i, j, S = neighbor_list(atoms.positions, atoms.cell.array, 4.0)
    ref = atoms.positions[j] - atoms.positions[i] + S @ atoms.cell.array
    m = np.asarray(g.edge_mask)
    np.testing.assert_allclose(np.sort(np.linalg.norm(np.asarray(vec)[m], axis=1)),
                               np.sort(np.linalg.norm(ref, axis=1)), atol=1e-12)

    def f(p, c):  # a smooth function of edge lengths, using the safe vectors
        _, vs = edge_vectors(g, p, c)
        r = jnp.linalg.norm(vs, axis=1)
        return jnp.sum(jnp.where(g.edge_mask, jnp.exp(-r), 0.0))

    gp, gc = jax.grad(f, argnums=(0, 1))(pos, cell)
    h = jax.hessian(f)(pos, cell)
    assert np.all(np.isfinite(gp)) and np.all(np.isfinite(gc)) and np.all(np.isfinite(h))
    # cell derivative against central finite differences
    eps = 1e-6
    fd = np.zeros((3, 3))
    for a in range(3):
        for b in range(3):
            d = np.zeros((3, 3))
            d[a, b] = eps
            fd[a, b] = (f(pos, cell + d) - f(pos, cell - d)) / (2 * eps)
    np.testing.assert_allclose(np.asarray(gc), fd, atol=1e-7)


def test_neighbor_list_does_not_import_torch():
    """vesin imports torch eagerly (seconds) only to accept torch tensors: phonjax imports it with torch hidden
    when torch is not loaded yet, and torch stays importable afterwards."""
    import subprocess
    import sys
    child = ("import sys, numpy as np\n"
             "from phonjax.graph import neighbor_list\n"
             "i, j, S = neighbor_list(np.array([[0., 0, 0], [1, 1, 1]]), np.eye(3) * 3.0, 2.5)\n"
             "print(len(i), 'torch' in sys.modules)\n"
             "import importlib.util\n"
             "print(importlib.util.find_spec('torch') is None or __import__('torch') is not None)\n")
    out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-1000:]
    n, loaded, importable = out.stdout.split()
    assert int(n) > 0 and loaded == "False" and importable == "True"
