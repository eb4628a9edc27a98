"""Worker processes and workflows of the schedule tests (tests/test_schedules.py)."""
