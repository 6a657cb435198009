"""Build script: the metadata lives in pyproject.toml; this file only adds the optional
cffi extension ``apigw_core._native`` (from apigw_core/_native_build.py).

The extension is optional.  When there is no C compiler, or compiling fails, the package
still installs and ``apigw_core.native`` falls back to the pure-Python twins (it warns at
import time).  Set ``APIGW_REQUIRE_NATIVE=1`` (CI does) to make a failed build an error.
"""

import os
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CCompilerError, ExecError, PlatformError

# ValueError/OSError: e.g. a missing source file or an unusable compiler path.
_BUILD_ERRORS = (CCompilerError, ExecError, PlatformError, OSError, ValueError)


def _native_required() -> bool:
    return os.environ.get("APIGW_REQUIRE_NATIVE", "") not in ("", "0")


def _skip(exc: BaseException) -> None:
    if _native_required():
        raise exc
    sys.stderr.write(
        "\n"
        "*** apigw_core: building the C extension apigw_core._native failed:\n"
        f"***   {type(exc).__name__}: {exc}\n"
        "*** Installing without it; the pure-Python parsers will be used (slower).\n"
        "*** Install a C compiler and the Python headers, then reinstall, to get it.\n"
        "\n"
    )


class OptionalBuildExt(build_ext):
    """build_ext that reports a failed C build instead of failing the install."""

    def finalize_options(self) -> None:
        super().finalize_options()
        # `optional` also makes setuptools skip copying a missing extension back into
        # the source tree (editable installs), instead of failing there.
        for ext in self.extensions or ():
            ext.optional = not _native_required()

    def run(self) -> None:
        try:
            super().run()
        except _BUILD_ERRORS as exc:
            _skip(exc)

    def build_extension(self, ext) -> None:
        try:
            super().build_extension(ext)
        except _BUILD_ERRORS as exc:
            _skip(exc)


setup(
    cffi_modules=["apigw_core/_native_build.py:ffibuilder"],
    cmdclass={"build_ext": OptionalBuildExt},
)
