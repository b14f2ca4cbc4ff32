"""RocketQA step 2 on Natural Questions: the cross-encoder re-ranker (ERNIE 2.0 large in the
paper) on a RocketQA cross TSV (``query, title, para, label``) built from the step-1
retriever's top 100 as the released ``data_process/construct_nq_train_ce.py`` does: the
first top-100 passage that contains an answer as the positive, one random passage without
one as the negative.

    rqa train --config configs/cross_encoder_nq.py --workdir DIR \\
        --config.model_dir=/path/to/ernie-2.0-large-en --config.data.path=nq_ce0.tsv

Every value taken from a released script names the file.
"""

import ml_collections

from configs import common


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    common.check_variant(arg, __file__)
    c = common.get_cross_config()
    c.cross_head, c.objective = "v1", "pointwise"
    c.cross_max_len = 160  # model/script/run_cross_encoder_train.sh: --max_seq_len 160
    c.data.source = "rocketqa_tsv"
    c.data.cross_negatives_per_query = 1  # data_process/construct_nq_train_ce.py: one negative
    c.data.negative_depth = 100  # the same file reads the retriever's top 100
    # run_nq.sh STEP2: run_cross_encoder_train.sh ... 2 1 -> 1 GPU x batch 64, 2 epochs;
    # lr 1e-5, warmup 0.0 (constant rate), weight decay 0.01 (run_cross_encoder_train.sh)
    c.train_batch_size = 64
    c.learning_rate = 1e-5
    c.warmup_proportion = 0.0
    c.weight_decay = 0.01
    c.num_epochs = 2
    c.fgm_epsilon = 0.01  # model/src/finetune/cross_encoder.py: 0.01 * g / ||g||
    c.fgm_mode = "rocketqa"
    c.adam_epsilon = 1e-8  # Paddle's Adam default (model/src/optimization.py never sets it)
    c.dtype = "bfloat16"
    c.remat = True  # ERNIE large at 160 tokens
    if arg == "runlocal":  # minutes on a laptop CPU: a tiny random model, the sample
        common.tiny_model(c)
        c.data.source, c.train_batch_size, c.num_epochs, c.num_train_steps = "sample", 8, 0, 10
        c.dtype, c.remat, c.cross_max_len = "float32", False, 64
        c.log_every, c.eval_every, c.checkpoint_every = 5, 0, 10
    return c
