"""One module per public release, each reading it as distributed; data/benchmarks.py picks one by data.format."""
