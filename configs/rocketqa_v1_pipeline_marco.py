"""RocketQA v1's four steps on MS MARCO passage (``rqa pipeline v1``): de0 (ERNIE 2.0 base,
cross-batch + random negatives, 40 epochs) → ce (ERNIE 2.0 large on de0's top 1000) →
denoised hard negatives (top 50, τ 0.1, 4 per positive) → de1 (10 epochs from the initial
checkpoint) → augmentation of unlabeled questions (τ_pos 0.9) → de2.

    rqa pipeline v1 --config configs/rocketqa_v1_pipeline_marco.py --workdir gs://.../v1 \\
        --config.data.dir=/path/to/msmarco --config.data.unlabeled_queries=/path/to/unlabeled.tsv \\
        --config.retriever.model_dir=OUT/ernie_base --config.reranker.model_dir=OUT/ernie_large

``runlocal``: the same stages on the sample with a tiny random model, a few steps each.
"""

import ml_collections

from configs import common, cross_encoder_marco, rocketqa_v1_marco


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    common.check_variant(arg, __file__)
    c = common.get_pipeline_v1_config()
    c.retriever = rocketqa_v1_marco.get_config()
    c.reranker = cross_encoder_marco.get_config()
    c.data.source = "marco"
    c.mine.depth = 1000  # run_marco.sh STEP1-Inference: TOP_K=1000
    c.denoise.top, c.denoise.tau_neg, c.denoise.per_positive = (
        50,
        0.1,
        4,
    )  # construct_marco_train_de.py
    c.augment.top, c.augment.tau_pos, c.augment.tau_neg, c.augment.negatives = 50, 0.9, 0.1, 4
    c.later_epochs = 10  # the paper: steps 3-4 train 10 epochs
    if arg == "runlocal":
        common.tiny_pipeline(c)
    return c
