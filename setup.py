"""Build of the compiled inner loops (src/eegz/_core.c); everything else is in pyproject.toml."""
from setuptools import Extension, setup

setup(ext_modules=[Extension("eegz._core", ["src/eegz/_core.c"], depends=["src/eegz/_tables.h"],
                             extra_compile_args=["-O3", "-std=c99", "-Wall", "-Wextra", "-Wno-unused-parameter"])])
