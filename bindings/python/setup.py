"""Wheel tags: a wheel that carries libmgha and the mgha binary (copied into mgha/ by
scripts/build-wheel) runs on one platform only, so it is tagged for it (``py3-none-<platform>``:
any Python 3, since the bindings load the library through cffi's ABI mode and compile nothing).
Built without them (``pip install ./bindings/python`` from a checkout), the package stays
``py3-none-any`` and finds the library through ``MGHA_LIBRARY`` or the workspace build."""

from pathlib import Path

from setuptools import setup

try:
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # setuptools before 70.1 takes the command from the wheel package
    from wheel.bdist_wheel import bdist_wheel

NATIVE = [Path(__file__).resolve().parent / "mgha" / name for name in ("libmgha.so", "bin/mgha")]


class PlatformWheel(bdist_wheel):
    """bdist_wheel, platform-tagged when the package holds native files."""

    def finalize_options(self) -> None:
        super().finalize_options()
        if any(path.is_file() for path in NATIVE):
            self.root_is_pure = False

    def get_tag(self):  # type: ignore[no-untyped-def]
        python, abi, platform = super().get_tag()
        if self.root_is_pure:
            return python, abi, platform
        return "py3", "none", platform


setup(cmdclass={"bdist_wheel": PlatformWheel})
