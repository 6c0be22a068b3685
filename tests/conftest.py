"""Shared test fixtures: paths to the peer data beside the project (../shared)."""
from pathlib import Path

import pytest

import phonjax  # noqa: F401  (enables float64 before any test builds arrays)

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
PHONOPY_EXAMPLES = SHARED / "data" / "phonopy-examples"


@pytest.fixture(scope="session")
def phonopy_examples() -> Path:
    if not PHONOPY_EXAMPLES.is_dir():
        pytest.skip(f"phonopy example data not found at {PHONOPY_EXAMPLES} (../shared beside the project)")
    return PHONOPY_EXAMPLES
