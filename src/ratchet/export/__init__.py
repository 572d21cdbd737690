"""Ratchet's record in other tools' formats (read only, like the UI): Inspect AI eval logs (`inspect_log`)."""
