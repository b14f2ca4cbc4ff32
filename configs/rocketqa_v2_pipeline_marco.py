"""RocketQAv2 end to end on MS MARCO (``rqa pipeline v2``): lists of 128 built from the
RocketQA retriever's top 1000 (rand) and denoised by the RocketQA re-ranker (aug), joint
training as ``rocketqa_v2_marco.py``, evaluation of both models.

    rqa pipeline v2 --config configs/rocketqa_v2_pipeline_marco.py --workdir /mnt/v2 \\
        --config.init.v1_workdir=/mnt/v1          # a finished `rqa pipeline v1` workdir
    # or --config.init.retriever_dir=DE0 --config.init.reranker_dir=CE0 \\
    #    --config.v1.data.dir=/path/to/msmarco

``get_config("runlocal")``: every stage in minutes on a CPU (tiny random models, the sample).
"""

import ml_collections

from configs import common, rocketqa_v1_pipeline_marco, rocketqa_v2_marco


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    common.check_variant(arg, __file__)
    c = common.get_pipeline_v2_config()
    c.v1 = rocketqa_v1_pipeline_marco.get_config()
    c.joint = rocketqa_v2_marco.get_config()
    c.lists.depth, c.lists.top = 1000, 50
    c.eval.depth, c.eval.rerank_top = 1000, 50
    if arg == "runlocal":
        c.v1 = rocketqa_v1_pipeline_marco.get_config("runlocal")
        c.joint = rocketqa_v2_marco.get_config("runlocal")
        c.lists.depth = c.eval.depth = 100
        c.guard.allow_weak_reranker = True  # a tiny random teacher: weak by design
    c.joint.reranker.cross_head = "pooler_logit"  # v1's re-ranker continues as its log-odds
    return c
