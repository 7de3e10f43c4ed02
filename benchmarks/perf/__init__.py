"""Speed and memory benchmarks: ``python -m benchmarks.perf`` prints every figure as JSON and markdown."""
