"""The one packaging fact pyproject.toml cannot state: the shipped model as package data.

engines/default (its only copy in the repository) becomes the data package
``uar_stream.shipped.default``, so a wheel carries the model; pyproject.toml's package-data says
which of its files ship (not the onnx/ and cache/ engine caches). engines/ldl stays out.
"""
from setuptools import find_namespace_packages, setup

setup(
    # namespace finding, as pyproject's packages.find did: data folders such as corruptions/frost
    # are packages too (setuptools warns otherwise)
    packages=[*find_namespace_packages(include=["uar_stream*"], exclude=["*__pycache__*"]),
              "uar_stream.shipped.default"],
    package_dir={"uar_stream.shipped.default": "engines/default"},
)
