"""One module per long-range strategy; each defines ``build(request) -> Correction`` (see
:mod:`phonjax.longrange.correction`) and is registered under its mode name in
:mod:`phonjax.longrange.strategies`. A new strategy is one module here (or anywhere) plus one
:func:`~phonjax.longrange.strategies.register` call."""
