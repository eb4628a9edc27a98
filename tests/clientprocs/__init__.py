"""Worker processes for tests/test_client.py: the workflow code a Client never imports."""
