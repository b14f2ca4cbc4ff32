"""RocketQAv2 on MS MARCO passage: the retriever and the re-ranker trained jointly with
dynamic listwise distillation on hybrid lists of 128 (RocketQAv2 §3-4, released
``research/RocketQAv2_EMNLP2021``), initialised from RocketQA's step-1 dual encoder and
step-2 cross encoder (``rqa convert rocketqa`` imports the released ones):

    rqa train --config configs/rocketqa_v2_marco.py --workdir /mnt/ckpt/marco_joint \\
        --config.retriever.model_dir=/path/to/marco_de0 \\
        --config.reranker.model_dir=/path/to/marco_ce0 --config.reranker.cross_head=pooler_logit \\
        --config.data.path=/path/to/marco_joint.rand128+aug128

The re-ranker head is the released joint model's ``v2`` ([CLS] → linear), which a
checkpoint with that head continues (e.g. the released joint warm-up, converted). RocketQA's
step-2 re-ranker has the v1 head (pooler → 2 logits): ``cross_head=pooler_logit`` continues
it exactly, as its log-odds; a fresh ``v2`` head on it would throw its head away, so the
project refuses that.

``get_config("runlocal")`` is a one-minute CPU smoke run (tiny random models, the sample).
Every value taken from a released script names the file.
"""

import ml_collections

from configs import common


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    common.check_variant(arg, __file__)
    c = common.get_joint_config()
    c.retriever.tie_towers = False  # query and passage towers, as RocketQA step 1 trains them
    c.retriever.pooling, c.retriever.normalize = "cls", False
    c.reranker.cross_head = "v2"  # [CLS] -> linear(1) (model/src/finetune/joint_encoder.py)
    c.title_form = "rocketqa"
    c.pair_form = "v2"
    # model/script/run_joint_model_train.sh: --q_max_seq_len 32 --p_max_seq_len 128; the
    # re-ranker's pairs: the query cut to 32, then title + para to 160 in all
    c.q_max_len, c.p_max_len, c.cross_q_max_len, c.cross_max_len = 32, 128, 32, 160
    c.data.source = "rocketqa_tsv"  # the released marco_joint.rand128+aug128 (blocks of 128)
    c.list_size = 128  # the README's data_train/marco_joint.rand128+aug128
    # run_joint_model_train.sh: batch_size=384 lines per GPU = 3 lists of 128, on 32 GPUs
    c.train_batch_size = 96
    c.learning_rate = 1e-5  # same file: lr=1e-5
    c.warmup_proportion = 0.0  # --warmup_proportion 0.0: a constant rate
    c.weight_decay = 0.01  # --weight_decay 0.01
    c.num_epochs = 2  # RocketQAv2 §4.1: 2 epochs on MS MARCO
    c.adam_epsilon = 1e-8  # Paddle's Adam default (model/src/optimization.py never sets it)
    c.distillation = "released_code"  # model/src/finetune/joint_encoder.py: kldiv_loss(de, ce)
    c.dtype, c.remat = "bfloat16", True  # --use_mix_precision true --use_recompute true
    c.eval_every = 2000
    c.data.dev_corpus = "sample:200000"  # judged passages + a fixed random sample (see v1)
    if arg == "runlocal":
        common.tiny_joint(c)
    return c
