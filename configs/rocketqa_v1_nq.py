"""RocketQA v1 step 1 on Natural Questions (DPR data): dual encoder from ERNIE 2.0 base,
cross-batch negatives plus DPR's BM25 hard negatives (one per question).

    rqa train --config configs/rocketqa_v1_nq.py --workdir DIR \\
        --config.model_dir=/path/to/ernie-2.0-base-en --config.data.path=/path/to/nq-train.json
"""

import ml_collections

from configs import common


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    common.check_variant(arg, __file__)
    c = common.get_dual_config()
    c.tie_towers = False
    c.pooling = "cls"
    c.title_form = "rocketqa"  # an untitled passage is [CLS] [SEP] para [SEP], as RocketQA's reader
    c.q_max_len, c.p_max_len = 32, 128  # titles and passages together (DPR's 100-word passages)
    c.data.source = "dpr"  # nq-train.json: first positive + hard negatives
    # run_nq.sh STEP1: run_dual_encoder_train.sh ... 30 2 -> 2 GPUs x batch_size=512
    # (model/script/run_dual_encoder_train.sh), all passages shared across both (cross-batch)
    c.train_batch_size = 1024
    c.num_negatives = 1  # RocketQA on NQ: 1 hard negative per positive
    c.learning_rate = 3e-5  # model/script/run_dual_encoder_train.sh: lr=3e-5
    c.warmup_proportion = 0.1  # same file: --warmup_proportion 0.1
    c.weight_decay = 0.0  # same file: --weight_decay 0.0
    c.num_epochs = 30  # run_nq.sh: 30 epochs for every dual-encoder step
    c.adam_epsilon = 1e-8  # Paddle's Adam default (model/src/optimization.py never sets it)
    c.dtype = "bfloat16"
    if arg == "runlocal":  # minutes on a laptop CPU: a tiny random model, the sample
        common.tiny_model(c)
        c.data.source, c.train_batch_size, c.num_epochs, c.num_train_steps = "sample", 8, 0, 20
        c.dtype, c.log_every, c.checkpoint_every = "float32", 5, 10
        c.q_max_len, c.p_max_len = 24, 48
    return c
