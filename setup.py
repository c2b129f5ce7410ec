"""Install nmt. The version is read from nmt/version.py without importing the package."""

import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(
    r'^__version__ = "([^"]+)"', (HERE / "nmt" / "version.py").read_text(), re.M
).group(1)

INSTALL_REQUIRES = [
    "tensorflow>=2.21,<2.22",
    "tensorflow-text>=2.21,<2.22",
    "keras>=3.10,<4",
    "sentencepiece>=0.2,<0.3",
    "sacrebleu>=2.4,<3",
    "click>=8.1,<9",
    "PyYAML>=6,<7",
    "matplotlib>=3.8,<4",
]

EXTRAS = {
    "test": ["pytest>=8,<10", "pytest-xdist>=3.5,<4", "hypothesis>=6.100,<7"],
    "dev": ["ruff>=0.6,<1"],
}
EXTRAS["dev"] += EXTRAS["test"]

setup(
    name="nmt",
    version=VERSION,
    description="LSTM encoder-decoder translation with attention on Keras 3 and TensorFlow",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["nmt", "nmt.*"]),
    package_data={"nmt.serving": ["page.html"]},
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["nmt=nmt.cli:cli"]},
)
