"""Benchmarks of tune-lab: `python -m benchmarks.run [--quick] [--only NAME ...]`.

Every comparison is measured inside one run, its cases interleaved, and reported as the
median of several repetitions: the machines this runs on are shared, and load from other
processes must hit every case alike for a ratio to mean anything.
"""
