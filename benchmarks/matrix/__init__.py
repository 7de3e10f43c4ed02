"""Benchmark suites and the matrix of cells each expands into.

``model`` holds the data (a suite, its axes, selections and profiles, the cells), ``checks`` and ``reading`` turn a
suite file into a :class:`~vaezoo_bench.matrix.model.Suite`, ``built_in`` finds the suites shipped with the runner,
``expansion`` turns a suite and a profile into cells, and ``document`` describes them for the report (matrix.json).
"""
