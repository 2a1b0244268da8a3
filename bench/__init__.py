"""The benchmark harness (`python bench/run.py`); not part of the service, never run in CI."""
