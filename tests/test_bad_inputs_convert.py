"""`phonjax convert` bad inputs, run as a user would (subprocess): exit code 2, one `phonjax: error:` line naming
the fix, no traceback, nothing written and nothing run (issue 19, converter rows and model-file safety).
Runtime ≈ 80 s of CPU on 2 cores (one real conversion, the rest fail before any model is built)."""
import pathlib
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("nequip")

ROOT = Path(__file__).resolve().parents[1]
PKG = Path(__file__).parent / "data" / "tiny_cu.nequip.zip"


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "phonjax.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=600)


def _one_line_error(r, *needles):
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert "Traceback" not in r.stderr, r.stderr[-2000:]
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("phonjax: error: "), r.stderr[-2000:]
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


class _Touch:
    def __init__(self, path):
        self.path = pathlib.Path(path)

    def __reduce__(self):
        return (pathlib.Path.touch, (self.path,))


@pytest.mark.parametrize("kind", ["nequip", "sevennet"])
def test_non_empty_out_is_refused_then_overwrite_works(tmp_path, kind):
    out = tmp_path / "model"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    src = PKG if kind == "nequip" else tmp_path / "never-read.pth"
    if kind == "sevennet":
        src.write_bytes(b"not read: the output check comes first")
    r = _cli("convert", kind, src, "--out", out)
    _one_line_error(r, str(out), "--overwrite")
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    if kind == "nequip":
        r = _cli("convert", kind, src, "--out", out, "--overwrite")
        assert r.returncode == 0, r.stderr[-2000:]
        assert (out / "keep.txt").exists() is False and any(out.iterdir())


@pytest.mark.parametrize("kind,suffix", [("nequip", ".ckpt"), ("sevennet", ".pth")])
def test_code_running_pickle_is_refused(tmp_path, kind, suffix):
    marker = tmp_path / "pwned"
    src = tmp_path / f"evil{suffix}"
    torch.save({"state_dict": {}, "hyper_parameters": {"x": _Touch(marker)}, "config": {"y": _Touch(marker)}}, src)
    _one_line_error(_cli("convert", kind, src, "--out", tmp_path / "out"), "refused to load", "pathlib")
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_foreign_target_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    src = tmp_path / "evil.ckpt"
    cfg = {"_target_": "pathlib.Path.touch", "self": str(marker)}
    torch.save({"state_dict": {"model.sole_model.w": torch.zeros(1)},
                "hyper_parameters": {"info_dict": {"training_module": {"model": cfg}}}}, src)
    _one_line_error(_cli("convert", "nequip", src, "--out", tmp_path / "out"), "refused", "pathlib.Path.touch")
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_help_warns_about_packages():
    r = _cli("convert", "--help")
    assert r.returncode == 0
    text = " ".join(r.stdout.split())
    assert "runs its own bundled Python code" in text and "trust" in text and "--overwrite" in text
