"""phonjax's kernel compile options (:mod:`phonjax.xla_options`): on CPU the force-constant kernels are compiled
without YNNPACK fusions (which made loading a cached executable cost seconds), on every path that compiles them
(the plain kernel and the program cache's), with results equal to jaxlib's default to float rounding."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from phonjax import program_cache as pc
from phonjax.compile_cache import disable_compile_cache, enable_compile_cache
from phonjax.hvp import hvp_kernel
from phonjax.xla_options import NO_YNN, accepted, kernel_compiler_options, kernel_jit

YNN = "__ynn_fusion"
cpu_only = pytest.mark.skipif(jax.default_backend() != "cpu", reason="the options are CPU-only")


class _Energy:  # dots and elementwise ops in float32, as a NequIP layer's; named by its repr, not its address
    def __call__(self, x, cell):
        w = jnp.linspace(-1.0, 1.0, 9, dtype=jnp.float32).reshape(3, 3)
        h = jnp.tanh(x.astype(jnp.float32) @ w) @ w.T
        return jnp.sum(h * h) + jnp.sum(cell) * 0

    def __repr__(self):
        return "_Energy()"

    def __eq__(self, other):
        return isinstance(other, _Energy)

    def __hash__(self):
        return 0


def _inputs():
    rng = np.random.default_rng(0)
    pos = jnp.asarray(rng.normal(size=(64, 3)))
    V = jnp.asarray(rng.normal(size=(2, 64, 3)))
    return jax.tree_util.Partial(_Energy()), pos, jnp.eye(3), V


def _ynn_count(jitted, *args, **kw) -> int:
    return jitted.lower(*args, **kw).compile().as_text().count(YNN)


def test_an_option_this_jaxlib_lacks_is_dropped():
    """A jaxlib without the option (older or newer) must get no options rather than fail every compilation."""
    backend = jax.default_backend()
    assert not accepted(backend, (("xla_cpu_no_such_option_of_phonjax", ""),))
    with pytest.raises(Exception):  # what the probe protects the kernels from
        jax.jit(lambda x: x + 1, compiler_options={"xla_cpu_no_such_option_of_phonjax": ""}).lower(1.0).compile()
    if backend == "cpu":
        assert accepted(backend, tuple(NO_YNN.items())) == (kernel_compiler_options() == NO_YNN)


@cpu_only
def test_kernel_compiled_without_ynn_and_equal_to_default():
    e, pos, cell, V = _inputs()

    def f(e, pos, cell, V):
        return hvp_kernel.__wrapped__(e, pos, cell, V, "jvp", None)

    default = jax.jit(f)
    if _ynn_count(default, e, pos, cell, V) == 0:
        pytest.skip("this jaxlib fuses nothing into YNNPACK here")
    assert _ynn_count(kernel_jit(f), e, pos, cell, V) == 0
    assert _ynn_count(hvp_kernel, e, pos, cell, V, mode="jvp", chunk_size=None) == 0
    ours = np.asarray(hvp_kernel(e, pos, cell, V, "jvp", None))
    ref = np.asarray(default(e, pos, cell, V))
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


@cpu_only
def test_program_cache_compiles_with_the_options(tmp_path):
    e, pos, cell, V = _inputs()
    enable_compile_cache(tmp_path / "xla")
    pc.clear_memory()
    try:
        out = pc.cached_call("hvp_kernel", hvp_kernel, e, pos, cell, V, mode="jvp", chunk_size=None)
        (call,) = pc._CALLS.values()
        leaves = jax.tree_util.tree_leaves((e, pos, cell, V))
        assert YNN not in call.lower(*leaves).compile().as_text()
        np.testing.assert_array_equal(np.asarray(out), np.asarray(hvp_kernel(e, pos, cell, V, "jvp", None)))
    finally:
        disable_compile_cache()
        pc.clear_memory()
