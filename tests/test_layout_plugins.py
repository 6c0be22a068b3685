"""Layout rules of io/ and model families (static, no JAX compilation): the library reaches converters only
through the registry, torch only in phonjax/convert, no module-level import cycles, and load_model dispatches
on the family recorded in config.yaml."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "phonjax"


def _module_imports(path: Path, modules) -> set[str]:
    """Modules imported at module level (not inside functions) by one file: ``from a import b`` depends on a.b
    when that is a module, else on a."""
    name = ".".join(path.relative_to(PKG.parent).with_suffix("").parts).removesuffix(".__init__")
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            subs = {f"{base}.{a.name}" for a in node.names}
            out |= (subs & modules) | ({base} if subs - modules else set())
    return out


def _graph() -> dict[str, set[str]]:
    mods = {}
    for p in PKG.rglob("*.py"):
        name = ".".join(p.relative_to(PKG.parent).with_suffix("").parts).removesuffix(".__init__")
        mods[name] = p
    return {m: {i for i in _module_imports(p, set(mods)) if i in mods and i != m} for m, p in mods.items()}


def test_library_does_not_import_converters_or_torch():
    """Not even inside functions: converters are reached by name through phonjax.models.converter."""
    for p in PKG.rglob("*.py"):
        if "convert" in p.relative_to(PKG).parts:
            continue
        for node in ast.walk(ast.parse(p.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for n in names:
                assert not n.startswith(("phonjax.convert", "convert", "torch")), f"{p}: imports {n}"


def test_no_module_level_import_cycles():
    g = _graph()
    state: dict[str, int] = {}

    def visit(m, stack):
        state[m] = 1
        for d in g[m]:
            if state.get(d) == 1:
                raise AssertionError("import cycle: " + " → ".join(stack[stack.index(d):] + [d]))
            if d not in state:
                visit(d, stack + [d])
        state[m] = 2

    for m in g:
        if m not in state:
            visit(m, [m])


def test_load_model_dispatches_on_family(tmp_path, monkeypatch):
    import phonjax.models as models

    d = tmp_path / "m"
    d.mkdir()
    (d / "config.yaml").write_text("family: toy\nr_max: 3.0\n")
    with pytest.raises(models.ModelLoadError, match="unknown model family 'toy'"):
        models.load_model(d)
    toy = type("ToyFamily", (), {"load": staticmethod(lambda directory: ("toy model", Path(directory).name)),
                                 "load_trainable": staticmethod(lambda directory: "toy adapter")})
    monkeypatch.setitem(__import__("sys").modules, "toy_family_for_test", toy)
    monkeypatch.setitem(models.FAMILIES, "toy", "toy_family_for_test")
    assert models.load_model(d) == ("toy model", "m")
    assert models.load_trainable(d) == "toy adapter"
    (d / "config.yaml").write_text("r_max: 3.0\n")  # no family: a NequIP directory (written before families)
    assert models.family_of(d) == "nequip"
    with pytest.raises(ValueError, match="unknown converter"):
        models.converter("mace")


def test_nequip_model_implements_the_protocol():
    from phonjax.models import PhononModel
    from phonjax.models.nequip.model import Model, ModelConfig

    c = ModelConfig(type_names=("Li", "F"), r_max=4.0, feature_irreps_hidden=("8x0e+4x1o", "8x0e+4x1o", "8x0e"),
                    radial_mlp_depth=(1, 1, 1), radial_mlp_width=(8, 8, 8), avg_num_neighbors=10.0)
    m = Model(c, {})
    assert isinstance(m, PhononModel) and m.family == "nequip"
    assert m.receptive_field == 3 * 4.0  # three message-passing hops of r_max
