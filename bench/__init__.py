"""Benchmarks of issue 5: `python -m bench` (see __main__.py); not part of the test suite."""
