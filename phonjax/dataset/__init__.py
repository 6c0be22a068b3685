"""Quantum ESPRESSO datasets and DFPT references (pw.x, ph.x, q2r.x, matdyn.x).

Public API: build_dataset / DatasetConfig (builder.py), run_dfpt / DfptConfig (dfpt.py),
fd_force_constants (fd.py, finite-displacement DFT force constants); QE input writers in qe_io.py (QE outputs
are parsed by phonjax.io.qe, structures read by phonjax.io.structure); runner.py runs executables with
resumable per-sample directories. Error metrics: phonjax.compare.
"""
from ..io.qe import QEOutputError, SCFNotConvergedError, parse_pw_output
from ..io.structure import read_structure
from .builder import DatasetConfig, DatasetInputError, DatasetResult, build_dataset, load_dataset_config
from .dfpt import DfptConfig, DfptResult, load_dfpt_config, run_born, run_dfpt
from .fd import FDResult, fd_force_constants, phonopy_fc_to_phonjax
from .pseudos import PseudoError
from .qe_io import PwSettings
from .runner import QENotFoundError, QERunError, qe_available

__all__ = ["DatasetConfig", "DatasetInputError", "DatasetResult", "build_dataset", "load_dataset_config",
           "read_structure", "DfptConfig", "DfptResult", "load_dfpt_config",
           "run_dfpt", "run_born", "PseudoError", "PwSettings", "QEOutputError", "SCFNotConvergedError", "parse_pw_output",
           "QENotFoundError", "QERunError", "qe_available", "FDResult", "fd_force_constants",
           "phonopy_fc_to_phonjax"]
