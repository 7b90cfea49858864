"""The benchmark harness behind Benchmarks/run, one module per part."""
