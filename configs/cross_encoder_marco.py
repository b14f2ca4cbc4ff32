"""RocketQA step 2 on MS MARCO: the cross-encoder re-ranker. The paper uses ERNIE 2.0 *large*
(24 layers, 1024 hidden); negatives are 4 per query drawn from the step-1 retriever's
top 1000 (positives excluded), FGM on, 2 epochs, batch 256, constant lr 1e-5. Every value
taken from a released script names the file.

    rqa train --config configs/cross_encoder_marco.py --workdir DIR \\
        --config.model_dir=/path/to/ernie-2.0-large-en --config.data.dir=/path/to/msmarco \\
        --config.data.train_run=de0_train.run --config.data.dev_run=de0_dev.run
"""

import ml_collections

from configs import common


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    common.check_variant(arg, __file__)
    c = common.get_cross_config()
    c.cross_head, c.objective = "v1", "pointwise"
    c.cross_max_len = 160
    c.data.source = "marco"
    # data_process/construct_marco_train_ce.py: 4 distinct negatives per query from the
    # step-1 retriever's top 1000, positives excluded
    c.data.cross_negatives_per_query = 4
    c.data.negative_depth = 1000
    # run_marco.sh STEP2 + model/script/run_cross_encoder_train.sh: 4 GPUs x batch 64,
    # lr 1e-5, warmup 0.0 (constant rate), weight decay 0.01, 2 epochs, max_seq_len 160
    c.train_batch_size = 256
    c.learning_rate = 1e-5
    c.warmup_proportion = 0.0
    c.weight_decay = 0.01
    c.num_epochs = 2
    c.fgm_epsilon = 0.01  # model/src/finetune/cross_encoder.py: 0.01 * g / ||g||
    c.fgm_mode = "rocketqa"  # the same file: trained on the perturbed loss, probe without dropout
    c.adam_epsilon = 1e-8  # Paddle's Adam default (model/src/optimization.py never sets it)
    c.dtype = "bfloat16"
    c.remat = True  # ERNIE large at 160 tokens
    c.eval_every = 2000
    if arg == "runlocal":  # minutes on a laptop CPU: a tiny random model, the sample
        common.tiny_model(c)
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
