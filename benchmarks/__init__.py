"""Experiment suites and speed benchmarks; they drive vaezoo's public API and command line only."""
