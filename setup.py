"""Build of the compiled inner loops (eegz/_core.c); everything else is in pyproject.toml."""
from setuptools import Extension, setup

setup(ext_modules=[Extension("eegz._core", ["eegz/_core.c"], depends=["eegz/_tables.h"],
                             extra_compile_args=["-O3", "-std=c99", "-Wall", "-Wextra", "-Wno-unused-parameter"])])
