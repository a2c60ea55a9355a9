"""Builds tcplife's compiled engine (engine/*.c, C99: the module ``tcplife._engine``) beside
the Python package.

The engine is optional: with no working C compiler (``CC=/bin/false``), ``pip install .``
still installs tcplife, says in the build log why the engine was not built, and tcplife
runs on its Python core (``tcplife --version`` says which core is active). Set
``TCPLIFE_REQUIRE_ENGINE=1`` to make a failed build an error (CI does).
Everything else about the package is in pyproject.toml.
"""

from __future__ import annotations

import os
import sys
from glob import glob

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

REQUIRED = os.environ.get("TCPLIFE_REQUIRE_ENGINE", "") not in ("", "0")


class OptionalBuildExt(build_ext):
    """build_ext that falls back to the Python core when the engine cannot be built."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # no compiler at all (DistutilsPlatformError, ...)
            self._fell_back(exc)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:  # CompileError, LinkError, a compiler that is /bin/false
            self._fell_back(exc)

    def _fell_back(self, exc: BaseException) -> None:
        if REQUIRED:
            raise
        message = (f"tcplife: the compiled engine was not built ({type(exc).__name__}: "
                   f"{exc}); tcplife will run on its Python core. Install a C compiler "
                   "(gcc) and the Python headers to build it.")
        self.announce(message, level=3)
        print(message, file=sys.stderr)


setup(
    ext_modules=[Extension(
        "tcplife._engine",
        sources=sorted(glob("engine/*.c")),
        depends=sorted(glob("engine/*.h")),
        extra_compile_args=["-std=c99", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
        optional=not REQUIRED,
    )],
    cmdclass={"build_ext": OptionalBuildExt},
)
