"""lomond's build backend: ``setuptools.build_meta``, able to read the PEP 639 licence
fields on Python 3.8 too.

``pyproject.toml`` states the licence as PEP 639 has it: ``license = "BSD-3-Clause"``
(an SPDX expression) and ``license-files``. setuptools reads these from version 77
on, which needs Python 3.9 or later; building on Python 3.8 gets setuptools 75.3 at
most, which rejects both. With such a setuptools, this module hands it the same
licence in the form it knows (``license = {text = "BSD-3-Clause"}`` and
``[tool.setuptools] license-files``) as it reads ``pyproject.toml``. With setuptools
77 or later it is ``setuptools.build_meta``, unchanged.
"""

from __future__ import annotations

from typing import Any

import setuptools
from setuptools.build_meta import *  # noqa: F403  (the PEP 517 hooks)

#: The first setuptools version that reads PEP 639 licence fields.
PEP_639_SETUPTOOLS = 77


def older_licence_fields(config: dict[str, Any]) -> dict[str, Any]:
    """Rewrite the PEP 639 licence fields of a parsed ``pyproject.toml`` for setuptools < 77."""
    project = config.get("project", {})
    if isinstance(project.get("license"), str):
        project["license"] = {"text": project["license"]}
    license_files = project.pop("license-files", None)
    if license_files is not None:
        tool = config.setdefault("tool", {}).setdefault("setuptools", {})
        tool.setdefault("license-files", license_files)
    return config


def _major(version: str) -> int:
    head = version.split(".", 1)[0]
    return int(head) if head.isdigit() else 0


if _major(setuptools.__version__) < PEP_639_SETUPTOOLS:  # pragma: no cover - Python 3.8
    from setuptools.config import pyprojecttoml

    _load_file = pyprojecttoml.load_file

    def _load_with_older_licence_fields(filepath: Any) -> dict[str, Any]:
        return older_licence_fields(_load_file(filepath))

    pyprojecttoml.load_file = _load_with_older_licence_fields
