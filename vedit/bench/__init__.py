"""Measuring students: the paper's offline metrics (:mod:`vedit.bench.metrics`) and the
``vedit bench`` command group (:mod:`vedit.bench.cli`)."""
