"""silse: Similar Image In Large Scale Environment."""

from pathlib import Path

from setuptools import find_packages, setup

README = Path(__file__).with_name("README.md")

setup(
    name="silse-spark",
    version="0.1.0",
    description="Hash avatars into 48-bit twin values with a small CNN and find spam clusters with Spark SQL",
    long_description=README.read_text(encoding="utf-8") if README.exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["silse_spark", "silse_spark.*"]),
    package_data={"silse_spark": ["models/*.json", "models/*.weights.h5"]},
    include_package_data=True,
    # Floors answer known CVEs (see docs/security.md); exact pins live in constraints.txt.
    install_requires=[
        "pyspark>=4.0",
        "tensorflow-cpu>=2.18",
        "keras>=3.14.0",
        "pillow>=12.2.0",
        "pyarrow>=15",
        "pandas>=2.2,<3",
        "numpy>=1.26",
        "h5py>=3.10",
        "scipy>=1.11",  # the training head's whitening (silse_spark.training.head)
        "numba>=0.61",  # the framing's compiled inner loops (silse_spark.framing_kernels)
    ],
    extras_require={
        "eval": ["imagehash>=4.3", "pdqhash>=0.2.5", "matplotlib>=3.8"],
        "bench": ["psutil>=5.9", "py-spy>=0.3.14"],
        "dev": [
            "pytest>=8",
            "pytest-xdist>=3.5",
            "hypothesis>=6.100",
            "ruff>=0.6",
            "mypy>=1.10",
            "bandit>=1.7",
            "atheris>=2.3",
            "nbclient>=0.10",
            "nbformat>=5.9",
            "ipykernel>=6.29",
            "imagehash>=4.3",
            "pdqhash>=0.2.5",
            "matplotlib>=3.8",
            "psutil>=5.9",
            "py-spy>=0.3.14",
        ],
    },
    entry_points={"console_scripts": ["silse=silse_spark.cli:main"]},
)
