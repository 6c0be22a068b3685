"""File formats, one module each (the package imports none of them, so reading one format never loads another):

* :mod:`phonjax.io.structure` — structures from files / ASE / Materials Project ids, and the one "match atoms
  modulo a lattice" helper every mapping uses;
* :mod:`phonjax.io.phonopy` — ``phonopy.Phonopy`` objects and ``force_constants.hdf5``;
* :mod:`phonjax.io.band_yaml` — phonopy's ``band.yaml`` (:class:`~phonjax.io.band_yaml.BandData`);
* :mod:`phonjax.io.born` — phonopy ``BORN`` files (read and write) and the format dispatch of ``read_born``;
* :mod:`phonjax.io.qe` — Quantum ESPRESSO outputs (pw.x, ph.x, dynamical-matrix files, matdyn);
* :mod:`phonjax.io.outputs` — the writers :func:`phonjax.predict.predict` runs over its result.
"""
