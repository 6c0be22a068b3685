from dataclasses import dataclass, field

import pytest

from phonjax.config import ConfigError, from_dict, load_config, to_dict


@dataclass(frozen=True)
class Sub:
    lr: float = 1e-3
    layers: tuple[int, ...] = (1, 2)


@dataclass(frozen=True)
class Top:
    name: str
    n: int = 3
    sub: Sub = field(default_factory=Sub)
    tag: str | None = None


def test_roundtrip_and_types():
    cfg = from_dict(Top, {"name": "x", "sub": {"lr": "2e-3", "layers": [4]}})
    assert cfg.sub.lr == 2e-3 and cfg.sub.layers == (4,) and cfg.n == 3
    assert from_dict(Top, to_dict(cfg)) == cfg


@pytest.mark.parametrize("bad", [{"name": "x", "nn": 1}, {"name": "x", "sub": {"lrr": 1}}, {"n": 1},
                                 {"name": "x", "n": 1.5}, {"name": "x", "n": True}])
def test_errors(bad):
    with pytest.raises(ConfigError):
        from_dict(Top, bad)


def test_load_with_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("name: a\nsub:\n  lr: 0.1\n")
    cfg = load_config(Top, p, ["sub.lr=0.5", "n=7"])
    assert cfg.sub.lr == 0.5 and cfg.n == 7
    with pytest.raises(ConfigError, match="unknown"):
        load_config(Top, p, ["sub.xx=1"])
