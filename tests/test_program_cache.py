"""Traced programs kept across processes (:mod:`phonjax.program_cache`): a kernel is traced once per key and
machine, read back bit-identically, keyed by shapes and static options, retraced when its file is damaged, and
never cached for inputs known only by an object's address."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from phonjax import program_cache as pc
from phonjax.compile_cache import disable_compile_cache, enable_compile_cache

TRACES = []


@jax.jit
def _kernel(w, x, scale):
    TRACES.append(1)  # runs only while tracing
    return jnp.tanh(x @ w) * scale


def _fn(w, x, *, scale):
    return _kernel(w, x, scale)


@pytest.fixture
def cache(tmp_path):
    enable_compile_cache(tmp_path / "xla")
    pc.clear_memory()
    TRACES.clear()
    yield tmp_path / "xla" / pc.SUBDIR
    disable_compile_cache()
    pc.clear_memory()


def _args(n=4):
    rng = np.random.default_rng(0)
    return jnp.asarray(rng.normal(size=(n, n))), jnp.asarray(rng.normal(size=(3, n)))


def test_traced_once_then_read_back(cache):
    w, x = _args()
    first = pc.cached_call("k", _fn, w, x, scale=2.0)
    assert len(TRACES) == 1 and len(list(cache.glob("k-*.jaxexport"))) == 1
    pc.clear_memory()  # as a new process: the program comes from the file
    again = pc.cached_call("k", _fn, w, x, scale=2.0)
    assert len(TRACES) == 1
    np.testing.assert_array_equal(np.asarray(again), np.asarray(first))
    np.testing.assert_allclose(np.asarray(first), np.asarray(jnp.tanh(x @ w) * 2.0), rtol=1e-12)


def test_key_has_shapes_and_static_options(cache):
    w, x = _args()
    pc.cached_call("k", _fn, w, x, scale=2.0)
    out = pc.cached_call("k", _fn, w, x, scale=3.0)  # another static value: another program
    np.testing.assert_allclose(np.asarray(out), np.asarray(jnp.tanh(x @ w) * 3.0), rtol=1e-12)
    w5, x5 = _args(5)
    pc.cached_call("k", _fn, w5, x5, scale=2.0)
    assert len(list(cache.glob("k-*.jaxexport"))) == 3


def test_damaged_entry_is_traced_again(cache):
    w, x = _args()
    pc.cached_call("k", _fn, w, x, scale=2.0)
    (path,) = cache.glob("k-*.jaxexport")
    path.write_bytes(b"not a program")
    pc.clear_memory()
    out = pc.cached_call("k", _fn, w, x, scale=2.0)
    np.testing.assert_allclose(np.asarray(out), np.asarray(jnp.tanh(x @ w) * 2.0), rtol=1e-12)
    assert path.read_bytes() != b"not a program"


def test_address_named_inputs_are_not_cached(cache):
    w, x = _args()

    def user_energy(a, b):  # known only by its address, which means another function in another process
        return a @ b

    part = jax.tree_util.Partial(user_energy, w)
    out = pc.cached_call("user", lambda p, y: p(y.T), part, x)
    np.testing.assert_allclose(np.asarray(out), np.asarray(w @ x.T))
    assert not cache.exists() or not list(cache.glob("user-*"))


def test_off_is_the_plain_call(tmp_path):
    disable_compile_cache()
    assert pc.program_cache_dir() is None
    w, x = _args()
    out = pc.cached_call("k", _fn, w, x, scale=2.0)
    np.testing.assert_allclose(np.asarray(out), np.asarray(jnp.tanh(x @ w) * 2.0), rtol=1e-12)


def test_json_values_kept(cache):
    calls = []

    def compute():
        calls.append(1)
        return {"a": [[2, 3], "float32"]}

    assert pc.cached_json("v", ("cfg",), compute) == {"a": [[2, 3], "float32"]}
    assert pc.cached_json("v", ("cfg",), compute) == {"a": [[2, 3], "float32"]}
    assert len(calls) == 1
    pc.cached_json("v", ("other",), compute)
    assert len(calls) == 2


def test_other_sources_or_libraries_trace_again(cache, monkeypatch):
    w, x = _args()
    pc.cached_call("k", _fn, w, x, scale=2.0)
    pc.clear_memory()
    monkeypatch.setattr(pc, "_FINGERPRINT", ["another phonjax or another e3nn-jax"])
    out = pc.cached_call("k", _fn, w, x, scale=2.0)  # not the old entry: a second program is exported
    assert len(list(cache.glob("k-*.jaxexport"))) == 2
    np.testing.assert_allclose(np.asarray(out), np.asarray(jnp.tanh(x @ w) * 2.0), rtol=1e-12)
