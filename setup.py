"""Packaging for lomond."""

import os
import re
from pathlib import Path

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CCompilerError, ExecError, PlatformError

HERE = Path(__file__).parent
VERSION = re.search(
    r'__version__ = "([^"]+)"', (HERE / "lomond" / "_version.py").read_text()
).group(1)

TEST_REQUIRES = [
    "pytest>=7",
    "pytest-timeout",
    "hypothesis",
    "websockets>=13",
    "trustme",
    "pproxy",
    "coverage[toml]",
    # Real servers for the interoperability tests (tests/test_real_servers.py). Each
    # declares the Pythons it supports: Python 3.8 gets their last releases for it.
    "uvicorn>=0.22",
    "wsproto>=1.2",
    "aiohttp>=3.9",
    "tornado>=6.3",
]
DEV_REQUIRES = TEST_REQUIRES + [
    "ruff",
    "mypy",
    "sphinx",
    "tox",
]

# The optional C accelerator for masking (lomond.mask falls back to pure Python).
# LOMOND_NO_EXTENSIONS=1 skips it, as it switches it off at run time.
if os.environ.get("LOMOND_NO_EXTENSIONS") == "1":
    EXTENSIONS = []
else:
    EXTENSIONS = [Extension("lomond._speedups", ["lomond/_speedups.c"], optional=True)]


class OptionalBuildExt(build_ext):
    """``build_ext`` that warns instead of failing: lomond installs without a compiler."""

    def run(self):
        try:
            super().run()
        except (CCompilerError, ExecError, PlatformError, OSError) as error:
            self._skip("the extensions", error)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except (CCompilerError, ExecError, PlatformError, OSError) as error:
            self._skip(ext.name, error)

    def _skip(self, what, error):
        self.warn(f"could not build {what} ({error}); lomond will use pure Python")


setup(
    name="lomond",
    version=VERSION,
    description="A WebSocket client where a connection is an orderly stream of events",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="BSD-3-Clause",
    packages=find_packages(include=["lomond", "lomond.*"]),
    package_data={"lomond": ["py.typed", "_speedups.pyi"]},
    ext_modules=EXTENSIONS,
    cmdclass={"build_ext": OptionalBuildExt},
    python_requires=">=3.8",
    install_requires=["certifi"],
    extras_require={"test": TEST_REQUIRES, "dev": DEV_REQUIRES},
    entry_points={"console_scripts": ["lomond=lomond.cli:main"]},
    classifiers=[
        "Development Status :: 4 - Beta",
        "Intended Audience :: Developers",
        "License :: OSI Approved :: BSD License",
        "Operating System :: OS Independent",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3 :: Only",
        "Programming Language :: Python :: 3.8",
        "Programming Language :: Python :: 3.9",
        "Programming Language :: Python :: 3.10",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Programming Language :: Python :: 3.13",
        "Topic :: Internet :: WWW/HTTP",
        "Typing :: Typed",
    ],
)
