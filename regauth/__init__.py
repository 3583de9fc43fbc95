"""regauth: one credential tool for every container registry."""

__version__ = "0.1.0"
