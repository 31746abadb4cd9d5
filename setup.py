"""The optional C extension of lomond; the rest of the packaging is in pyproject.toml."""

import os

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CCompilerError, ExecError, PlatformError

# The optional C accelerator for masking (lomond.mask falls back to pure Python).
# LOMOND_NO_EXTENSIONS=1 skips it, as it switches it off at run time.
if os.environ.get("LOMOND_NO_EXTENSIONS") == "1":
    EXTENSIONS = []
else:
    EXTENSIONS = [
        Extension("lomond.protocol._speedups", ["lomond/protocol/_speedups.c"], optional=True)
    ]


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


setup(ext_modules=EXTENSIONS, cmdclass={"build_ext": OptionalBuildExt})
