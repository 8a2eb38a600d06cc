"""ctrflow: schema-driven feature pipeline, trainer and batch scorer for CTR models.

The same file installs the project locally (``pip install -e .[test]``) and
stages it to Dataflow workers (``--setup_file``, filled in automatically).
"""
from setuptools import find_packages, setup

setup(
    name="ctrflow",
    version="0.1.0",
    description="Schema-driven tf.Transform preprocessing, Keras DeepFM/Wide&Deep training and Beam batch "
                "scoring for click-through-rate models",
    long_description=open("README.md", encoding="utf-8").read() if __import__("os").path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10,<3.13",
    packages=find_packages(include=["ctrflow", "ctrflow.*", "pipeline", "pipeline.*", "model", "model.*",
                                    "schemas", "schemas.*", "beam_jobs", "beam_jobs.*"]),
    package_data={"schemas": ["*.yaml"]},
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "tensorflow-transform>=1.21,<1.22",
        "tfx-bsl>=1.21,<1.22",
        "apache-beam[gcp]>=2.77,<2.78",
        "keras>=3.10,<4",
        "pandas>=2.2,<4",
        "pyarrow>=14,<26",
        "numpy>=1.26,<3",
        "pyyaml>=6,<7",
        "matplotlib>=3.8,<4",
        "tensorboard>=2.20,<3",
    ],
    extras_require={"test": ["pytest>=8,<10"]},
    entry_points={"console_scripts": ["ctrflow=ctrflow.cli:main"]},
)
