"""Channel history benchmark: ``python -m bench.history`` (docs/BENCHMARKS.md)."""
