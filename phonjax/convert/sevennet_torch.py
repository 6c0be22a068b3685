"""Reference energies of SevenNet torch models: a copy that runs in float64 end to end (exact Wigner-3j
constants) and E/F/σ through sevenn's own graph builder. torch and sevenn are imported only when called."""
from __future__ import annotations

import math

import numpy as np

from phonjax.convert._common import ConversionError
from phonjax.convert.sevennet_read import load_torch_model

def _exact_w3j_multiple(buf, where: str):
    """Exact float64 value of a float32-rounded constant k·w3j(l1, l2, l3) (k = ±1 or ±√(2l+1)) that e3nn's
    code generation stored in a tensor product (the w3j buffers and their constant-folded copies)."""
    import torch
    from e3nn.o3 import wigner_3j

    if buf.ndim != 3 or any(d % 2 == 0 for d in buf.shape):
        raise ConversionError(f"{where}: unexpected constant of shape {tuple(buf.shape)}")
    l1, l2, l3 = ((d - 1) // 2 for d in buf.shape)
    w = wigner_3j(l1, l2, l3, dtype=torch.float64)
    b = buf.detach().double()
    k = float((b * w).sum() / (w * w).sum())
    for c in (1.0, math.sqrt(2 * l3 + 1), math.sqrt(2 * l1 + 1), math.sqrt(2 * l2 + 1)):
        for sgn in (1.0, -1.0):
            if abs(k - sgn * c) < 1e-6 * c and torch.allclose(b, sgn * c * w, atol=1e-6):
                return sgn * c * w
    raise ConversionError(f"{where} is not a multiple of e3nn's Wigner 3j ({l1}, {l2}, {l3})")


def torch_model_as(torch_model, dtype: str = "float64"):
    """A copy of a sevenn model that runs in ``dtype`` end to end.

    For float64 the Wigner-3j constants of the tensor products (float32 in the checkpoint and in e3nn's
    generated code — ``_w3j_*`` buffers and their constant-folded copies ``_tensor_constant*`` —, i.e.
    rounded to ~1e-8) are replaced by exact float64 values (checked equal to 1e-6 first), and the one-hot
    embedding (hard-wired to float32 in sevenn) is cast to the model dtype.
    """
    import copy
    import re
    import types

    import torch

    tdt = {"float64": torch.float64, "float32": torch.float32}[dtype]
    try:
        m = copy.deepcopy(torch_model)
    except Exception:  # TorchScript functions (e.g. after nequip's set_global_state) cannot be deep-copied
        source = getattr(torch_model, "_phonjax_source", None)
        if source is None:
            raise
        m, _ = load_torch_model(source)
    m = m.to(tdt)
    m.eval()
    if dtype == "float64":
        n_fixed = 0
        for name, mod in m.named_modules():
            for bname, buf in list(mod.named_buffers(recurse=False)):
                if re.fullmatch(r"_w3j_\d+_\d+_\d+|_tensor_constant\d+", bname) is None:
                    continue
                buf.copy_(_exact_w3j_multiple(buf, f"{name}.{bname}"))
                n_fixed += 1
        if n_fixed == 0 and any(".convolution" in n for n, _ in m.named_modules()):
            raise ConversionError("no Wigner-3j constants found in the tensor products (unexpected e3nn version)")
    oh = m._modules["onehot_idx_to_onehot"]
    base = type(oh).forward

    def forward(self, data):  # sevenn's one-hot is hard-wired to float32
        data = base(self, data)
        for k in (self.key_output, self.key_additional_output):
            if k is not None:
                data[k] = data[k].to(tdt)
        return data

    oh.forward = types.MethodType(forward, oh)
    return m


def torch_energy_forces_stress(torch_model, atoms, dtype: str = "float64", modal: str | None = None):
    """(E eV, F (n, 3) eV/Å, stress (3, 3) eV/Å³ ASE convention) of a sevenn model on ``atoms``, run in
    ``dtype`` (see :func:`torch_model_as`; float32 is what SevenNetCalculator does). The graph is sevenn's
    own (``unlabeled_atoms_to_graph``, ASE neighbour list); ``modal``: the fidelity of a multi-fidelity model,
    set as sevenn's SevenNetCalculator(modal=...) does."""
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import sevenn._keys as KEY
        import sevenn.util as su
        from sevenn.atom_graph_data import AtomGraphData
        from sevenn.train.dataload import unlabeled_atoms_to_graph

    tdt = {"float64": torch.float64, "float32": torch.float32}[dtype]
    m = torch_model_as(torch_model, dtype)
    m.set_is_batch_data(False)
    d = unlabeled_atoms_to_graph(atoms, float(m.cutoff), with_shift=False)
    d = {k: (v if k == KEY.INFO else su.dtype_correct(v, float_dtype=tdt)) for k, v in d.items()}
    data = AtomGraphData(**d)
    if modal is not None:
        modal_map = getattr(m, "modal_map", None) or {}
        if modal not in modal_map:
            raise ConversionError(f"modal {modal!r}: not one of this model's fidelities {list(modal_map)}")
        if getattr(m, "eval_modal_map", False):
            data[KEY.DATA_MODALITY] = modal
        else:
            data[KEY.MODAL_TYPE] = torch.tensor(modal_map[modal], dtype=torch.int64)
    out = m(data)
    e = float(out[KEY.PRED_TOTAL_ENERGY].detach().double().item())
    f = out[KEY.PRED_FORCE].detach().double().numpy()
    v = -out[KEY.PRED_STRESS].detach().double().numpy()  # xx yy zz xy yz zx
    s = np.array([[v[0], v[3], v[5]], [v[3], v[1], v[4]], [v[5], v[4], v[2]]])
    return e, f, s


__all__ = ["torch_model_as", "torch_energy_forces_stress"]
