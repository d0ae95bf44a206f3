"""Latency benchmarks across back-ends and precisions."""
