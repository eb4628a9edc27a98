"""Helpers for tests that run real worker processes (crash, fencing, concurrency)."""
