"""Helpers of the queue tests: shared workflows, the worker app, and process control."""
