"""The lomond version string, in one place for pyproject.toml and the package."""

__version__ = "0.4.0"
