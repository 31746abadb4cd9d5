"""The lomond version string, kept in one place for setup.py and the package."""

__version__ = "0.4.0"
