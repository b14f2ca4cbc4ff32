"""The Python API, shaped like RocketQA's: ``load_model`` → ``encode_query`` / ``encode_para``
/ ``matching``. Everything returns numpy arrays computed eagerly (RocketQA returned
generators, a frequent source of confusion).

>>> de = rqa_jax.load_model("path/to/model")           # an HF or rqa_jax model dir
>>> q = de.encode_query(["what is a dual encoder"])     # [1, H] float32
>>> p = de.encode_para(["A dual encoder ..."], titles=["Dual encoders"])
>>> de.matching(["q1", "q2"], ["p1", "p2"])             # [2]: <q_i, p_i>
"""

from rqa_jax.inference import (
    DTYPES,
    SEPARATE_TOWER_DIRS,
    CrossEncoder,
    DualEncoder,
    cross_encoder_settings,
    dual_encoder_fns,
    load_cross_encoder,
    load_dual_encoder,
    load_model,
    load_tokenizer,
)

__all__ = [
    "DTYPES",
    "SEPARATE_TOWER_DIRS",
    "CrossEncoder",
    "DualEncoder",
    "cross_encoder_settings",
    "dual_encoder_fns",
    "load_cross_encoder",
    "load_dual_encoder",
    "load_model",
    "load_tokenizer",
]
