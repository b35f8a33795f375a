"""The work a benchmark asks of every path: scripted answers and what a timed request cost.

- :mod:`.scripted`: steer a random-weight model of a real size to a trained student's answers,
  identically on every engine, so timing measures realistic work;
- :mod:`.cost`: :class:`~.cost.Cost` and :data:`~.cost.Call`, the interface of a timed path.

Below :mod:`vedit.peers` and :mod:`vedit.bench`, which both build paths on it.
"""
