"""RocketQA v1's four steps on Natural Questions (``rqa pipeline v1``): the same stages as
MS MARCO with NQ's settings (run_nq.sh): top 100 mined, 1 denoised negative per positive,
30 epochs for every dual-encoder step. NQ is read in MS MARCO form (collection.tsv +
titles.tsv from psgs_w100.tsv, queries/qrels from nq-train/dev.json positives).

    rqa pipeline v1 --config configs/rocketqa_v1_pipeline_nq.py --workdir DIR \\
        --config.data.dir=/path/to/nq_marco_form --config.data.unlabeled_queries=mrqa.tsv
"""

import ml_collections

from configs import common, cross_encoder_nq, rocketqa_v1_nq


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    common.check_variant(arg, __file__)
    c = common.get_pipeline_v1_config()
    c.retriever = rocketqa_v1_nq.get_config()
    c.retriever.data.source = "marco"
    c.reranker = cross_encoder_nq.get_config()
    c.reranker.data.source = "marco"
    c.data.source = "marco"
    c.mine.depth = 100  # run_nq.sh STEP1-Inference: TOP_K=100
    c.denoise.per_positive = 1  # construct_nq_train_de.py
    c.augment.negatives = 1  # construct_unlabel_train_de.py: neg_cnt 1 for nq
    c.eval.depth = 100  # NQ reports R@5/20/100
    c.later_epochs = 30  # run_nq.sh: 30 epochs for steps 3-4
    if arg == "runlocal":
        common.tiny_pipeline(c)
    return c
