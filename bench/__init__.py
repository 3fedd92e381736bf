"""Meetgate's benchmarks: `python bench/run.py` starts everything, measures, prints ratios."""
