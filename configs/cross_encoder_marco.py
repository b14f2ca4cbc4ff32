"""RocketQA step 2 on MS MARCO: the cross-encoder re-ranker. The paper uses ERNIE 2.0 *large*
(24 layers, 1024 hidden); negatives are 4 per query drawn from the step-1 retriever's
top 1000 (positives excluded), FGM on, 2 epochs.

    rqa train --config configs/cross_encoder_marco.py --workdir DIR \\
        --config.model_dir=/path/to/ernie-2.0-large-en --config.data.dir=/path/to/msmarco \\
        --config.data.train_run=de0_train.run --config.data.dev_run=de0_dev.run
"""

import ml_collections

from configs import common


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    c = common.get_cross_config()
    c.cross_head, c.objective = "v1", "pointwise"
    c.cross_max_len = 160
    c.data.source = "marco"
    c.train_batch_size = 512  # 64 per GPU x 8 (1 positive : 4 negatives in the data)
    c.learning_rate = 1e-5
    c.weight_decay = 0.01
    c.num_epochs = 2
    c.fgm_epsilon = 0.01
    c.dtype = "bfloat16"
    c.remat = True  # ERNIE large at 160 tokens
    c.eval_every = 2000
    if arg == "runlocal":
        c.data.source, c.train_batch_size, c.num_epochs, c.num_train_steps = "sample", 8, 0, 10
        c.dtype, c.remat, c.cross_max_len, c.log_every, c.eval_every, c.checkpoint_every = (
            "float32",
            False,
            64,
            5,
            0,
            10,
        )
    return c
