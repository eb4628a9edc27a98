"""Processes of the version tests (tests/test_versions.py)."""
