"""The persistent compilation cache: a second process with the same cache directory compiles nothing (every
XLA compilation is a cache read) and traces no network (the exported program is read back), gives bit-identical force constants and frequencies, and the control with the
cache disabled shows that the counters do see compilations."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Child process: a tiny float64 NequIP model, LiF force constants in a 2×2×2 supercell and frequencies at a
#: few q, with JAX's compilation/cache events counted from the first line on.
CHILD = r"""
import json, sys
import numpy as np
from phonjax.testing import CompileStats
stats = CompileStats().start()
import phonjax
from ase.build import bulk
from phonjax.models.nequip.model import Model
import phonjax.models.nequip.model as pm
traces = []
_node_energies = pm.node_energies
def counted(*a, **k):  # runs only while the network is traced
    traces.append(1)
    return _node_energies(*a, **k)
pm.node_energies = counted
from phonjax.models.nequip.nn.config import ModelConfig
use = sys.argv[2] == "on"
where = phonjax.enable_compile_cache(sys.argv[1]) if use else None
cfg = ModelConfig(type_names=("Li", "F"), r_max=3.2, feature_irreps_hidden=("4x0e+4x1o", "4x0e"),
                  radial_mlp_depth=(1, 1), radial_mlp_width=(8, 8), avg_num_neighbors=8.0,
                  irreps_edge_sh="1x0e+1x1o+1x2e", type_embed_num_features=4, dtype="float64")
model = Model.init(cfg, seed=0)
fc = phonjax.force_constants(model, bulk("LiF", "rocksalt", a=4.03), 2, allow_small_supercell=True)
freqs = fc.frequencies(np.array([[0.0, 0.0, 0.0], [0.1, 0.2, 0.3], [0.5, 0.5, 0.0]]))
print("RESULT " + json.dumps({"stats": stats.as_dict(), "traces": len(traces), "dir": None if where is None else str(where),
                              "fc": np.asarray(fc.fc).ravel().tolist(), "freqs": np.asarray(freqs).ravel().tolist()}))
"""


def _run(cache_dir: Path, use: str, env_extra: dict | None = None) -> dict:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = dict(os.environ, PYTHONPATH=path, JAX_PLATFORMS="cpu")
    env.pop("PHONJAX_NO_COMPILE_CACHE", None)
    env.update(env_extra or {})
    out = subprocess.run([sys.executable, "-c", CHILD, str(cache_dir), use], env=env, capture_output=True,
                         text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def test_second_process_hits_the_cache(tmp_path):
    cache = tmp_path / "xla"
    cold = _run(cache, "on")
    warm = _run(cache, "on")
    n_entries = len(list(cache.iterdir()))
    off = _run(cache, "on", {"PHONJAX_NO_COMPILE_CACHE": "1"})  # control: the env switch wins over the call
    c, w, o = cold["stats"], warm["stats"], off["stats"]
    assert cold["dir"] == str(cache) and off["dir"] is None
    # cold: everything compiled and written
    assert c["backend_compiles"] >= 3 and c["cache_misses"] >= 3 and c["cache_hits"] == 0
    assert len(list(cache.iterdir())) >= 3
    # warm: the same number of executables, every one read back from the cache, none compiled
    def all_from_cache(s):
        return s["cache_misses"] == 0 and s["cache_hits"] == s["backend_compiles"] > 0

    assert all_from_cache(w) and w["backend_compiles"] == c["backend_compiles"]
    # nor traced: the force-constant kernel's program is read back (phonjax.program_cache), the network never
    # traced in the warm process; the controls trace it
    assert warm["traces"] == 0 and cold["traces"] > 0 and off["traces"] > 0
    # control with the cache disabled: the same compilations, none read or written — the warm criterion fails
    assert o["cache_hits"] == 0 and o["cache_misses"] == 0 and o["backend_compiles"] == c["backend_compiles"]
    assert not all_from_cache(o) and not all_from_cache(c)
    assert len(list(cache.iterdir())) == n_entries
    # cached executables compute the same numbers, bit for bit
    assert warm["fc"] == cold["fc"] == off["fc"]
    assert warm["freqs"] == cold["freqs"]


def test_cli_flag_and_default_dir(monkeypatch, tmp_path):
    from phonjax.cli import build_parser
    from phonjax.compile_cache import default_compile_cache_dir

    for cmd in (["predict", "POSCAR"], ["bands", "--phonopy", "p.yaml"], ["finetune", "c.yaml"]):
        assert build_parser().parse_args(cmd).no_compile_cache is False
        assert build_parser().parse_args(cmd + ["--no-compile-cache"]).no_compile_cache is True
    monkeypatch.delenv("PHONJAX_COMPILE_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_compile_cache_dir() == tmp_path / "phonjax" / "xla"
    monkeypatch.setenv("PHONJAX_COMPILE_CACHE", str(tmp_path / "elsewhere"))
    assert default_compile_cache_dir() == tmp_path / "elsewhere"


def test_bad_cache_dir_is_one_clear_error(tmp_path):
    from phonjax.compile_cache import enable_compile_cache

    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match="compilation cache directory"):
        enable_compile_cache(blocker / "sub")
