"""Benchmarks: workload families, the oracle grid search, and the tables the README quotes."""
