"""Helpers and subprocess workers for the tests of waits, messages, events, streams,
cancel, resume and fork (tests/test_waits.py and friends)."""
