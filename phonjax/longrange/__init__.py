"""Long-range dipole–dipole physics: Ewald C_dd(q), the non-analytic term, Gonze mixed-space correction and
the seed study's strategies (see :mod:`phonjax.longrange.strategies`)."""
