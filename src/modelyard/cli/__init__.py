"""The ``modelyard`` command, on top of the SDK."""
