"""Packaging: the metadata in pyproject.toml, the README as the package's description,
and the sdist, whose test suite must run on its own (as distributors run it).

The sdist test builds the sdist, unpacks it into a scratch directory, installs it
with its test extra into a fresh virtual environment and runs its whole test suite
there. It takes a minute or two and needs the package index (for the build backend
and the test dependencies), so it is marked ``slow``; ``.ci/run`` runs it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
import venv
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


# -- the sdist -------------------------------------------------------------------------


def run(command: list[str], cwd: Path, timeout: float, **env: str) -> str:
    result = subprocess.run(
        command,
        cwd=str(cwd),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        env={**os.environ, **env},
        check=False,
    )
    assert result.returncode == 0, f"{command} failed:\n{result.stdout[-5000:]}"
    return result.stdout


def build_sdist(outdir: Path) -> Path:
    pytest.importorskip("build")
    run([sys.executable, "-m", "build", "--sdist", "--outdir", str(outdir)], ROOT, 600)
    (sdist,) = outdir.glob("lomond-*.tar.gz")
    return sdist


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_the_sdist_s_tests_pass(tmp_path: Path) -> None:
    sdist = build_sdist(tmp_path / "dist")
    with tarfile.open(sdist) as archive:
        if hasattr(tarfile, "data_filter"):  # Python 3.12, and 3.8.17 and later
            archive.extractall(tmp_path / "unpacked", filter="data")
        else:
            archive.extractall(tmp_path / "unpacked")
    (tree,) = (tmp_path / "unpacked").iterdir()

    # What the tests read, besides the package.
    for name in [
        "tests/conftest.py",
        "tests/servers.py",
        "tests/peers.py",
        "tests/virtual_time.py",
        "docs/conf.py",
        "docs/events.rst",
        "docs/examples/hello.py",
        "examples/ticker.py",
        "fuzz/seeds",
        "CHANGELOG.md",
        "README.md",
        "LICENSE",
        "lomond/protocol/_speedups.c",
    ]:
        assert (tree / name).exists(), name

    # A distributor's run: install the sdist (with its test extra) into a fresh
    # environment, then run the tests from the unpacked tree, not from this checkout.
    # The pytest script (not python -m pytest, which puts the tree first on sys.path)
    # makes the tests import the installed package, C accelerator included.
    environment = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(environment)
    scripts = environment / ("Scripts" if os.name == "nt" else "bin")
    python = scripts / ("python.exe" if os.name == "nt" else "python")
    run([str(python), "-m", "pip", "install", "--quiet", f"{tree}[test]"], tree, 600)
    accelerated = run(
        [str(python), "-c", "import lomond.protocol.mask as m; print(m.ACCELERATED)"], tmp_path, 60
    )
    assert accelerated.strip() == "True"
    output = run(
        [str(scripts / "pytest"), "-q", "-p", "no:cacheprovider", "-rs"],
        tree,
        900,
        PYTHONDONTWRITEBYTECODE="1",
    )
    summary = output.strip().splitlines()[-1]
    assert re.search(r"\d+ passed", summary), summary
    assert "failed" not in summary and "error" not in summary, summary
