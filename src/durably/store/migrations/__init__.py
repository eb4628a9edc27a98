"""Numbered schema migrations, applied in order once per schema (``store.migrate``)."""
