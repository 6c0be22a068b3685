"""Finetuning configuration: frozen dataclasses read from YAML by :func:`phonjax.config.load_config`.

Unknown keys are errors (``phonjax.config.ConfigError``). A config names a starting phonjax model
directory, the data, the loss, the optimiser, the training loop and (optionally) a list of *stages*
for step-wise finetuning: each stage trains on its own data files and starts from the previous
stage's best (EMA) parameters.

Example (see ``configs/finetune_lif.yaml``)::

    model: models/nequip-oam-l
    out_dir: out/finetune_lif
    data: {train: examples/LiF/dataset_small.extxyz, batch_size: 4}
    loss: {energy_weight: 1.0, forces_weight: 10.0, stress_weight: 1.0}
    optim: {learning_rate: 1.0e-4, warmup_steps: 20, schedule: cosine}
    training: {max_epochs: 50, patience: 10}
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from phonjax.config import ConfigError, load_config


@dataclass(frozen=True)
class ShortRangeConfig:
    """Train on dipole-subtracted labels (a short-range model; :mod:`phonjax.train.short_range`).

    born: Z*/ε∞ file (phonopy BORN or QE ph.x output) for ``reference``, the primitive cell the training
    structures are supercells of. supercell: the supercell matrix (N, 3 ints or 9 ints); null: inferred per
    structure. stress: subtract the dipole stress too (6 extra Ewald sums per structure; false drops the stress
    labels). max_displacement: largest displacement from a reference site, as a fraction of the nearest-neighbour
    distance. cache: keep the dipole labels in ``$XDG_CACHE_HOME/phonjax/dipole_labels``.
    """

    born: str
    reference: str
    supercell: tuple[int, ...] | None = None
    stress: bool = True
    max_displacement: float = 0.35
    cache: bool = True


@dataclass(frozen=True)
class DataConfig:
    """Where the labelled structures come from and how they are batched.

    train: extended-XYZ file (energy eV, forces eV/Å, optional stress eV/Å³ in ASE's sign convention).
    valid: optional separate validation file; if absent, a seeded ``valid_fraction`` split of ``train``
    (default 4:1). isolated_atom_energies: per-element reference energies (eV) of the DFT; if empty they
    are read from the file (``info`` keys, or single-atom frames with ``config_type: IsolatedAtom``).
    batch_size: structures per padded batch (every batch has the same static shape).
    short_range: if set, every label (train and valid, every stage, and the force-constant reference) has
    its harmonic dipole–dipole part removed and the exported model is recorded as short-range.
    """

    train: str = ""
    valid: str | None = None
    valid_fraction: float = 0.2
    split_seed: int = 0
    batch_size: int = 4
    use_stress: bool = True
    max_structures: int | None = None
    isolated_atom_energies: dict[str, float] = field(default_factory=dict)
    short_range: ShortRangeConfig | None = None


@dataclass(frozen=True)
class FcLossConfig:
    """Force-constant-aware loss (Hessian-vector products against reference force-constant rows).

    reference: a phonopy yaml with force constants / displacement forces for a supercell of the
    material, or a unit-cell file (POSCAR) with ``supercell`` (diagonal) and ``force_sets`` (phonopy
    FORCE_SETS, e.g. DFT finite displacements) or ``force_constants``. weight 0 disables the term. n_vectors random home-cell directions per
    step (0: all 3·n_prim unit directions, i.e. the full home-cell rows).
    """

    reference: str | None = None
    force_sets: str | None = None
    force_constants: str | None = None
    supercell: tuple[int, int, int] | None = None
    weight: float = 0.0
    n_vectors: int = 0


@dataclass(frozen=True)
class LossConfig:
    """Weights of energy per atom (eV/atom), force components (eV/Å) and stress components (eV/Å³)."""

    energy_weight: float = 1.0
    forces_weight: float = 10.0
    stress_weight: float = 1.0
    kind: Literal["mse", "huber"] = "mse"
    huber_delta: float = 0.01
    fc: FcLossConfig = FcLossConfig()


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with linear warm-up then cosine decay / constant / reduce-on-plateau; clipping; EMA."""

    learning_rate: float = 1.0e-3
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1.0e-8
    warmup_steps: int = 0
    schedule: Literal["cosine", "constant", "plateau"] = "cosine"
    min_lr_ratio: float = 0.01
    plateau_factor: float = 0.5
    plateau_patience: int = 5
    plateau_min_lr_ratio: float = 1.0e-3
    clip_norm: float | None = 10.0
    ema_decay: float | None = 0.99


@dataclass(frozen=True)
class FreezeConfig:
    """Which parameters train. ``all``; ``readout`` (per_atom_energy_readout); ``scale_shift``
    (per_type_energy_scale_shift); ``last_layers`` (the last ``last_k_layers`` convnet layers +
    readout + scale/shift); ``patterns``: regular expressions matched against '/'-joined parameter
    paths (e.g. ``layer3_convnet/.*``). Frozen parameters get no update and no weight decay."""

    train: Literal["all", "readout", "scale_shift", "last_layers", "patterns"] = "all"
    last_k_layers: int = 1
    patterns: tuple[str, ...] = ()
    train_energy_offsets: bool = True


@dataclass(frozen=True)
class TrainingConfig:
    """Loop settings. Epoch counts are in passes over the training split. init: ``pretrained`` starts from the
    model's parameters; ``random`` re-initialises them (same architecture, ``Model.init(config, seed)``) —
    the control run for what pretraining contributes."""

    max_epochs: int = 100
    seed: int = 0
    eval_every: int = 1
    patience: int | None = 20
    min_delta: float = 0.0
    monitor: Literal["loss", "e_mae", "f_mae", "f_rmse"] = "loss"
    checkpoint_every: int = 1
    keep_checkpoints: int = 2
    energy_reference: Literal["isolated_atoms", "fit", "none"] = "isolated_atoms"
    progress: bool = True
    init: Literal["pretrained", "random"] = "pretrained"


@dataclass(frozen=True)
class ParallelConfig:
    """Data-parallel training (:mod:`phonjax.train.parallel`): every batch of ``data.batch_size`` structures is
    split over the devices, parameters and optimiser state are replicated, gradients summed over devices.

    devices: how many of the devices JAX sees share each batch (null: all of them; 1: one device).
    distributed: multi-host; call ``jax.distributed.initialize`` first (also done when the environment sets
    ``JAX_COORDINATOR_ADDRESS``) with coordinator_address ("host:port"), num_processes and process_id (null:
    detected by JAX from SLURM / Open MPI / Cloud TPU or ``JAX_COORDINATOR_ADDRESS``)."""

    devices: int | None = None
    distributed: bool = False
    coordinator_address: str | None = None
    num_processes: int | None = None
    process_id: int | None = None


@dataclass(frozen=True)
class StageConfig:
    """One step of step-wise finetuning: its own data files, optional epoch/lr/freeze overrides."""

    name: str
    train: str
    valid: str | None = None
    max_epochs: int | None = None
    learning_rate: float | None = None
    freeze: FreezeConfig | None = None


@dataclass(frozen=True)
class FinetuneConfig:
    """Top level. ``model``: phonjax model directory to start from. ``out_dir``: where checkpoints,
    metrics (CSV/JSON), the learning curve and the finetuned model directory (``out_dir/model``)
    are written. Paths are relative to the working directory unless absolute."""

    model: str
    out_dir: str
    data: DataConfig = DataConfig()
    loss: LossConfig = LossConfig()
    optim: OptimConfig = OptimConfig()
    freeze: FreezeConfig = FreezeConfig()
    training: TrainingConfig = TrainingConfig()
    parallel: ParallelConfig = ParallelConfig()
    stages: tuple[StageConfig, ...] = ()

    def __post_init__(self):
        validate_config(self)


def validate_config(cfg: FinetuneConfig) -> None:
    """Raise ConfigError for values that type checks cannot catch."""
    if not cfg.stages and not cfg.data.train:
        raise ConfigError("data.train: no training file given (and no stages)")
    if not 0.0 < cfg.data.valid_fraction < 1.0:
        raise ConfigError(f"data.valid_fraction must be in (0, 1), got {cfg.data.valid_fraction}")
    if cfg.data.batch_size < 1:
        raise ConfigError(f"data.batch_size must be ≥ 1, got {cfg.data.batch_size}")
    if cfg.optim.learning_rate <= 0:
        raise ConfigError(f"optim.learning_rate must be > 0, got {cfg.optim.learning_rate}")
    if cfg.optim.ema_decay is not None and not 0.0 <= cfg.optim.ema_decay < 1.0:
        raise ConfigError(f"optim.ema_decay must be in [0, 1), got {cfg.optim.ema_decay}")
    if cfg.training.max_epochs < 1:
        raise ConfigError(f"training.max_epochs must be ≥ 1, got {cfg.training.max_epochs}")
    if cfg.loss.fc.weight > 0 and not cfg.loss.fc.reference:
        raise ConfigError("loss.fc.weight > 0 needs loss.fc.reference (force constants file)")
    for w in ("energy_weight", "forces_weight", "stress_weight"):
        if getattr(cfg.loss, w) < 0:
            raise ConfigError(f"loss.{w} must be ≥ 0")
    if cfg.parallel.devices is not None and cfg.parallel.devices < 1:
        raise ConfigError(f"parallel.devices must be ≥ 1 (or null: all devices), got {cfg.parallel.devices}")
    sr = cfg.data.short_range
    if sr is not None:
        if not sr.born or not sr.reference:
            raise ConfigError("data.short_range needs both born (Z*/eps file) and reference (primitive cell file)")
        if sr.supercell is not None and len(sr.supercell) not in (1, 3, 9):
            raise ConfigError(f"data.short_range.supercell must be N, 3 or 9 integers, got {list(sr.supercell)}")
        if not 0.0 < sr.max_displacement < 0.5:
            raise ConfigError(f"data.short_range.max_displacement must be in (0, 0.5), got {sr.max_displacement}")
    names = [s.name for s in cfg.stages]
    if len(set(names)) != len(names):
        raise ConfigError(f"stage names must be unique, got {names}")
    for f in (cfg.freeze, *[s.freeze for s in cfg.stages if s.freeze is not None]):
        if f.train == "patterns" and not f.patterns:
            raise ConfigError("freeze.train = patterns needs freeze.patterns")
        if f.train == "last_layers" and f.last_k_layers < 1:
            raise ConfigError("freeze.last_k_layers must be ≥ 1")


def load_finetune_config(path: str | Path, overrides: list[str] | None = None) -> FinetuneConfig:
    """Read a finetuning YAML file with ``key.sub=value`` overrides (``--set`` on the CLI)."""
    return load_config(FinetuneConfig, path, overrides)
