"""Benchmarks: training and generation throughput, measured against PyTorch eager when it is installed."""
