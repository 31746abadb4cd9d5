"""Packaging: the metadata in pyproject.toml, and the README as the package's description."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
HOME = "https://github.com/wildfoundry/dataplicity-lomond"
#: Parts of the repository that the sdist leaves out (no test reads them).
NOT_IN_THE_SDIST = ("benchmarks/", "compliance/")


def pyproject() -> dict[str, Any]:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    if sys.version_info >= (3, 11):
        import tomllib

        return tomllib.loads(text)
    tomli = pytest.importorskip("tomli")  # installed with mypy and coverage[toml] here
    result: dict[str, Any] = tomli.loads(text)
    return result


class TestMetadata:
    def test_project_table(self) -> None:
        project = pyproject()["project"]
        assert project["name"] == "lomond"
        assert project["license"] == "BSD-3-Clause"  # a PEP 639 SPDX expression
        assert project["license-files"] == ["LICENSE"]
        assert project["dependencies"] == ["certifi"]
        assert project["requires-python"] == ">=3.8"
        assert project["authors"]
        # PEP 639: with a licence expression, no licence classifier.
        assert not [name for name in project["classifiers"] if name.startswith("License ::")]

    def test_project_urls_are_the_project_s_home(self) -> None:
        urls = pyproject()["project"]["urls"]
        assert set(urls) >= {"Homepage", "Source", "Issues", "Changelog"}
        assert all(url.startswith(HOME) for url in urls.values()), urls

    def test_setup_py_only_builds_the_extension(self) -> None:
        source = (ROOT / "setup.py").read_text(encoding="utf-8")
        call = source[source.index("\nsetup(") :]
        assert set(re.findall(r"(\w+)=", call)) == {"ext_modules", "cmdclass"}

    def test_the_readme_has_no_relative_links(self) -> None:
        readme = (ROOT / "README.md").read_text(encoding="utf-8")
        links = re.findall(r"\]\(([^)\s]+)\)", readme)
        assert len(links) >= 17
        assert [link for link in links if not link.startswith(HOME + "/")] == []
        # Each link names a file of this repository.
        prefix = HOME + "/blob/HEAD/"
        assert all(link.startswith(prefix) for link in links), links
        missing = [
            link[len(prefix) :] for link in links if not (ROOT / link[len(prefix) :]).exists()
        ]
        if not (ROOT / ".git").exists():  # an unpacked sdist, which leaves these out
            missing = [path for path in missing if not path.startswith(NOT_IN_THE_SDIST)]
        assert missing == []


class TestBuildBackend:
    """build_backend/lomond_build.py: PEP 639 licence fields for setuptools < 77."""

    def test_older_licence_fields(self, monkeypatch: pytest.MonkeyPatch) -> None:
        pytest.importorskip("setuptools")
        monkeypatch.syspath_prepend(str(ROOT / "build_backend"))
        import lomond_build

        config = {
            "project": {"name": "x", "license": "BSD-3-Clause", "license-files": ["LICENSE"]},
            "tool": {"ruff": {}},
        }
        assert lomond_build.older_licence_fields(config) == {
            "project": {"name": "x", "license": {"text": "BSD-3-Clause"}},
            "tool": {"ruff": {}, "setuptools": {"license-files": ["LICENSE"]}},
        }
