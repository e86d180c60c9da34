"""shardkit's benchmark suite: ``python -m bench.run_all`` measures and writes docs/benchmarks.md."""
