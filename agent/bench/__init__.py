"""Benchmarks that print figures (`muse bench`): never timed tests."""
