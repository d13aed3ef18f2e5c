"""Benchmark tasks, their metrics and the baselines."""
