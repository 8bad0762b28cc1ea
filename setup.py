"""Build heapwatch's optional C extension, ``heapwatch._native``.

pyproject.toml holds the project's metadata; this file only declares the extension. The
extension is optional: where it cannot be built (no C compiler, no Python headers, an
interpreter it does not support) ``pip install`` still succeeds with a warning and
heapwatch runs on its pure-Python core. ``HEAPWATCH_NO_NATIVE=1`` skips the build (and,
at run time, the loading: see ``heapwatch/agent/core.py``).

Every ``*.c`` file in ``src/heapwatch/_native/`` is compiled into the one module: a new
job is a new file there (see ``jobs.h``), not a change here.
"""

from __future__ import annotations

import glob
import os
import platform
import sys
import sysconfig

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

NATIVE_DIR = os.path.join("src", "heapwatch", "_native")


def _skip_reason() -> str | None:
    if os.environ.get("HEAPWATCH_NO_NATIVE", "") not in ("", "0"):
        return "HEAPWATCH_NO_NATIVE is set"
    if platform.python_implementation() != "CPython":
        return f"{platform.python_implementation()} is not CPython"
    if sys.version_info < (3, 10):
        return "Python older than 3.10"
    if sysconfig.get_config_var("Py_GIL_DISABLED"):
        return "a free-threaded build (the census relies on the GIL)"
    if not sys.platform.startswith("linux") and sys.platform != "darwin":
        return f"platform {sys.platform} is not supported"
    return None


def _warn(message: str) -> None:
    bar = "*" * 78
    sys.stderr.write(f"\n{bar}\nWARNING: heapwatch: {message}\n"
                     f"heapwatch will run on its pure-Python core (slower census, no sampled "
                     f"allocation sites).\n{bar}\n\n")


class OptionalBuildExt(build_ext):
    """build_ext that warns instead of failing: the extension is an accelerator."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # no compiler, broken toolchain
            _warn(f"the C extension could not be built ({type(exc).__name__}: {exc})")

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:  # missing Python.h, a compile error
            _warn(f"{ext.name} could not be built ({type(exc).__name__}: {exc})")


def _extensions() -> list[Extension]:
    reason = _skip_reason()
    if reason is not None:
        sys.stderr.write(f"heapwatch: not building the C extension: {reason}\n")
        return []
    return [
        Extension(
            "heapwatch._native",
            sources=sorted(glob.glob(os.path.join(NATIVE_DIR, "*.c"))),
            depends=sorted(glob.glob(os.path.join(NATIVE_DIR, "*.h"))),
            extra_compile_args=["-std=c11", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter",
                                "-Wno-missing-field-initializers", "-fvisibility=hidden"],
        )
    ]


setup(ext_modules=_extensions(), cmdclass={"build_ext": OptionalBuildExt})
