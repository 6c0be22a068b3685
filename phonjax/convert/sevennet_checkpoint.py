"""Reading SevenNet checkpoints: the SevenNet-0 file inside the installed ``sevenn`` wheel, the torch model built by
sevenn's own builder (its backward-compatibility patches applied) and its config (torch and sevenn imported
only when called). :func:`phonjax.convert.sevennet.read_checkpoint` adds the architecture read from it."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from phonjax.convert._util import ConversionError
from phonjax.models.nequip.nn.config import UnsupportedFeature

__all__ = ["SEVENNET_0_RELPATH", "SEVENNET_0_SHA256", "SevenNetCheckpoint", "default_checkpoint", "load_torch_model"]

#: relative path of SevenNet-0 (11Jul2024) inside the installed ``sevenn`` package
SEVENNET_0_RELPATH = ("pretrained_potentials", "SevenNet_0__11Jul2024", "checkpoint_sevennet_0.pth")
#: sha256 of that file in sevenn 0.13.0 (identifies SevenNet-0 in the metadata)
SEVENNET_0_SHA256 = "7052cb42b7b3be42b40b97fa0d21077a48c54b5548948fc4dcf346629f813c36"


@dataclass(frozen=True)
class SevenNetCheckpoint:
    """What the converter reads from a checkpoint.

    arch: plain dict describing the architecture (see :func:`architecture`).
    weights: state-dict entries as float64 numpy arrays, after sevenn's own compatibility patches
      (old checkpoints have unsorted TP weights and flipped w3j signs; sevenn fixes them at build time).
    source: checkpoint path; sha256: its hash; sevenn_version: version of the reading package;
    checkpoint_version: version that wrote the checkpoint. torch_model: the model sevenn builds from it
    (reference for checks); config: sevenn's (patched) config dict.
    """

    arch: dict
    weights: dict
    source: str
    sha256: str
    sevenn_version: str
    checkpoint_version: str
    torch_model: object = field(default=None, repr=False, compare=False)
    config: dict = field(default_factory=dict, repr=False, compare=False)


# -- reading ---------------------------------------------------------------------------------------
def default_checkpoint() -> Path:
    """Path of SevenNet-0 (11Jul2024) inside the installed ``sevenn`` package."""
    try:
        import sevenn
    except ImportError as e:  # pragma: no cover - sevenn is a project dependency
        raise ConversionError(f"the 'sevenn' package is needed to convert SevenNet checkpoints ({e})") from None
    p = Path(sevenn.__file__).parent.joinpath(*SEVENNET_0_RELPATH)
    if not p.is_file():
        raise ConversionError(f"SevenNet-0 checkpoint not found in the installed sevenn package ({p})")
    return p


def load_torch_model(checkpoint=None):
    """(torch AtomGraphSequential in eval mode, sevenn config dict) of ``checkpoint`` (default SevenNet-0)."""
    import warnings

    path = Path(checkpoint) if checkpoint is not None else default_checkpoint()
    if not path.is_file():
        raise ConversionError(f"{path}: no such file")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import sevenn.util as su

        import torch

        # SevenNet checkpoints hold float32 weights and sevenn builds its modules in torch's *default* dtype:
        # build under float32 whatever an earlier caller (nequip's set_global_state sets float64) left behind.
        previous = torch.get_default_dtype()
        torch.set_default_dtype(torch.float32)
        try:
            cp = su.load_checkpoint(str(path))
            config = cp.config
            model = cp.build_model()
        except UnsupportedFeature:
            raise
        except Exception as e:
            raise ConversionError(f"{path}: not a readable SevenNet checkpoint ({type(e).__name__}: "
                                  f"{str(e)[:200]})") from None
        finally:
            torch.set_default_dtype(previous)
    model.eval()
    model._phonjax_source = str(path)  # lets torch_model_as rebuild a copy where deepcopy is impossible
    return model, config
