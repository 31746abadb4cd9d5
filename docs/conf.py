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


def join_raises_continuations(app, what, name, obj, options, lines):
    """Put each ``:raises X:`` entry that Napoleon wrote on one line.

    Napoleon writes a ``Raises`` entry of several lines as one string,
    ``":raises X: first line\\n    next line"``, and the four spaces end up inside the
    paragraph as a run of spaces. This runs after Napoleon (priority 600 > 500).
    """
    for index, line in enumerate(lines):
        if line.startswith(":raises") and "\n" in line:
            lines[index] = " ".join(part.strip() for part in line.split("\n"))


def setup(app):
    app.connect("autodoc-process-docstring", join_raises_continuations, priority=600)
