"""Sphinx configuration for the lomond docs."""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

from lomond import __version__  # noqa: E402

project = "lomond"
author = "the lomond authors"
copyright = "2026, the lomond authors"
version = release = __version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    # Renders CHANGELOG.md (included by changelog.rst) as Markdown.
    "myst_parser",
]
autodoc_typehints = "description"
autodoc_member_order = "bysource"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
nitpicky = False
html_theme = "alabaster"
exclude_patterns = ["_build"]
