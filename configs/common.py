"""Defaults shared by every experiment (RocketQA's): other configs start from this one.

Locked: setting a key that does not exist (a typo on the command line) is an error.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.model_dir = ""  # HF BERT/ERNIE dir (e.g. the MiniLM package's) to initialise from
    c.q_max_len = 32  # query tokens, [CLS] and [SEP] included
    c.p_max_len = 128  # title + para tokens
    c.cross_max_len = 160  # cross-encoder pair tokens
    c.pooling = "cls"  # "cls" (RocketQA) | "mean" (sentence-transformers models)
    c.normalize = False  # L2-normalise vectors before the inner product
    c.tie_towers = False  # RocketQA v1 trains separate query and passage towers
    c.title_form = "hf"  # passage without title: "hf" single text | "rocketqa" [CLS] [SEP] p [SEP]
    c.dtype = "float32"  # compute dtype: "float32" | "bfloat16"; parameters stay float32
    c.param_dtype = "float32"
    c.remat = False  # recompute each layer in the backward pass (less memory)
    c.scan_layers = False  # one nn.scan over layers: fast compiles for deep models
    c.train_batch_size = 512  # global queries per step (RocketQA: 512 per GPU x 8)
    c.eval_batch_size = 256  # rows per encoding batch
    c.seed = 0
    c.lock()
    return c


def get_runlocal_config() -> ml_collections.ConfigDict:
    """A tiny variant for a laptop or Colab CPU."""
    c = get_config()
    c.q_max_len, c.p_max_len, c.cross_max_len = 16, 64, 80
    c.train_batch_size, c.eval_batch_size = 8, 32
    return c
