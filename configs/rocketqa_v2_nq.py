"""RocketQAv2 on Natural Questions: joint training on hybrid lists of 32
(``nq_joint.rand32+aug32``), 3 epochs; otherwise as ``rocketqa_v2_marco.py``:

    rqa train --config configs/rocketqa_v2_nq.py --workdir /mnt/ckpt/nq_joint \\
        --config.retriever.model_dir=/path/to/nq_de0 --config.reranker.model_dir=/path/to/nq_ce0 \\
        --config.reranker.cross_head=pooler_logit --config.data.path=/path/to/nq_joint.rand32+aug32
"""

import ml_collections

from configs import common, rocketqa_v2_marco


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    common.check_variant(arg, __file__)
    c = rocketqa_v2_marco.get_config()
    c.list_size = 32  # the README's data_train/nq_joint.rand32+aug32
    # run_nq.sh: run_joint_model_train.sh ... 3 8 32 -> 8 GPUs; batch_size=384 passages per
    # GPU (run_joint_model_train.sh) = 12 lists of 32 each, 96 lists (questions) a step
    c.train_batch_size = 96
    c.num_epochs = 3  # RocketQAv2 §4.1: 3 epochs on NQ
    c.eval_every = 0  # NQ is evaluated by answer matching (rqa evaluate --answers), not qrels
    c.data.dev_corpus = "full"
    if arg == "runlocal":
        common.tiny_joint(c)
    return c
