"""phonjax NequIP models (:mod:`phonjax.models.nequip.model`) as :class:`phonjax.train.model_api.TrainableModel`.

Uses the model's padded batched graphs (:func:`phonjax.graph.build_graph`) and its pure batched energy
function :func:`phonjax.models.nequip.model.graph_energies`. On export the per-type energy offsets learnt in training
are folded into ``per_type_energy_scale_shift/shifts`` (E_i = shift[t] + scale[t]·e_i, so adding δ_t to
the shift adds Σ_i δ_{t_i} to the energy), and the model is written with :meth:`Model.save`.

Parameters nequip keeps fixed stay fixed whatever the freezing option: per-type shifts/scales when the
config says they are not trainable, and the Bessel weights when ``bessel_trainable`` is false.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from phonjax.graph import build_graph, graph_sizes
from phonjax.models.nequip.model import Model, ModelConfig, graph_energies, load_nequip
from phonjax.train.data import Capacities, Frame


class NequipTrainable:
    """Adapter: ``type_names``, ``r_max``, ``initial_params()``, ``frame_sizes``, ``build_graph``,
    ``energies(params, graph, positions, cells) -> (G,)``, ``export``, ``never_train`` (regexes)."""

    def __init__(self, model: Model):
        self.model = model
        self.config: ModelConfig = model.config
        self.type_names = tuple(model.type_names)
        self.r_max = float(model.r_max)
        fixed = []
        if not self.config.per_type_energy_shifts_trainable:
            fixed.append(r"per_type_energy_scale_shift/shifts")
        if not self.config.per_type_energy_scales_trainable:
            fixed.append(r"per_type_energy_scale_shift/scales")
        if not self.config.bessel_trainable:
            fixed.append(r"bessel_encode/bessel_weights")
        self.never_train = tuple(fixed)

    def initial_params(self):
        return jax.tree_util.tree_map(jnp.asarray, self.model.params)

    def frame_sizes(self, frame: Frame) -> tuple[int, int]:
        return graph_sizes(frame.positions, frame.cell, self.r_max)

    def build_graph(self, frames: Sequence[Frame], caps: Capacities):
        return build_graph([(f.positions, f.cell) for f in frames], [self.model.species(f.numbers) for f in frames],
                           self.r_max, n_graphs=caps.n_graphs, n_nodes=caps.n_nodes, n_edges=caps.n_edges)

    def energies(self, params, graph, positions, cells):
        return graph_energies(self.config, params, graph, positions, cells)

    def reinitialized(self, seed: int = 0) -> "NequipTrainable":
        """The same architecture with freshly initialised parameters (``Model.init(config, seed)``)."""
        meta = {**self.model.metadata, "init": f"random (seed {seed}), architecture of {self.model.metadata.get('model_name', 'the starting model')}"}
        return NequipTrainable(Model.init(self.config, seed=seed, metadata=meta))

    def to_model(self, tparams, metadata: dict | None = None) -> Model:
        """A :class:`Model` with the offsets folded into the per-type shifts."""
        params = jax.tree_util.tree_map(np.asarray, tparams["model"])
        params = jax.tree_util.tree_map(lambda x: x, params)  # copy structure (flax dicts are plain dicts)
        ss = dict(params["per_type_energy_scale_shift"])
        ss["shifts"] = np.asarray(ss["shifts"], np.float64) + np.asarray(tparams["offsets"], np.float64)
        params = {**params, "per_type_energy_scale_shift": ss}
        meta = {**self.model.metadata, **(metadata or {})}
        return Model(self.config, jax.tree_util.tree_map(jnp.asarray, params), meta)

    def export(self, tparams, out_dir, metadata: dict) -> Path:
        return self.to_model(tparams, metadata).save(out_dir, overwrite=True)


def load_trainable(path) -> NequipTrainable:
    """Adapter for the phonjax model directory ``path`` (error if it is not one)."""
    return NequipTrainable(load_nequip(path))


def nequip_arch_config(type_names, *, r_max: float, l_max: int = 1, parity: bool = True, num_layers: int = 4,
                       num_features: int = 32, radial_mlp_depth: int = 1, radial_mlp_width: int = 128,
                       num_bessels: int = 8, polynomial_cutoff_p: float = 6.0, avg_num_neighbors: float = 20.0,
                       dtype: str = "float64", per_type_energy_scales=None, per_type_energy_shifts=None) -> ModelConfig:
    """ModelConfig of torch ``nequip.model.NequIPGNNModel`` with the same arguments (irreps per layer:
    num_features × every (l ≤ l_max, parity) allowed, last layer num_features×0e)."""
    parts = []
    for l in range(l_max + 1):
        ps = (1, -1) if parity else ((1,) if l % 2 == 0 else (-1,))
        parts += [f"{num_features}x{l}{'e' if p == 1 else 'o'}" for p in ps]
    hidden = "+".join(parts)
    sh = "+".join(f"1x{l}{'e' if l % 2 == 0 else 'o'}" for l in range(l_max + 1))
    return ModelConfig(type_names=tuple(type_names), r_max=float(r_max),
                       feature_irreps_hidden=tuple([hidden] * (num_layers - 1) + [f"{num_features}x0e"]),
                       radial_mlp_depth=(radial_mlp_depth,) * num_layers,
                       radial_mlp_width=(radial_mlp_width,) * num_layers,
                       avg_num_neighbors=float(avg_num_neighbors), dtype=dtype, irreps_edge_sh=sh,
                       type_embed_num_features=num_features, num_bessels=num_bessels,
                       polynomial_cutoff_p=float(polynomial_cutoff_p),
                       per_type_energy_scales=per_type_energy_scales, per_type_energy_shifts=per_type_energy_shifts)


def random_trainable(type_names=("Li", "F"), *, seed: int = 0, **arch) -> NequipTrainable:
    """A freshly initialised NequIP (see :func:`nequip_arch_config`) wrapped for training."""
    return NequipTrainable(Model.init(nequip_arch_config(type_names, **arch), seed=seed))
