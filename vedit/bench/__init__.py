"""Measuring students: the paper's offline metrics (:mod:`vedit.data.metrics`) and the
``vedit bench`` command group (:mod:`vedit.bench.cli`)."""
