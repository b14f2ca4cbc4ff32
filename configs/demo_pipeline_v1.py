"""RocketQA v1's four steps on the sample (``rqa pipeline v1``), about 20 minutes on two CPU
cores: all-MiniLM-L6-v2 as retriever and re-ranker initialisation, the sample generated with
planted false negatives (restatements of answers the train qrels do not list) and unlabeled
questions, the undenoised ablation on.

    rqa pipeline v1 --config configs/demo_pipeline_v1.py --workdir demo_out/v1

The sample's entities have 4 passages each (plus restatements), so its "hard" candidates
are few: the denoiser looks at the top 10 rather than MS MARCO's top 50.
"""

import ml_collections

from configs import common, demo_cross, demo_dual


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    c = common.get_pipeline_v1_config()
    c.data.source = "sample"
    s = c.data.sample
    s.entities_per_type, s.train_queries, s.dev_queries = 60, 600, 200
    s.false_negative_share, s.max_restatements, s.unlabeled_questions = 0.8, 3, 300
    c.retriever = demo_dual.get_config()
    c.retriever.num_train_steps, c.retriever.eval_every = 20, 0
    c.retriever.checkpoint_every = 20
    c.reranker = demo_cross.get_config()
    c.reranker.data.negative_depth = 100  # deep enough that restatements are rarely drawn
    c.reranker.num_train_steps, c.reranker.eval_every, c.reranker.checkpoint_every = 160, 0, 80
    c.mine.depth = c.eval.depth = 1000
    c.denoise.top, c.augment.top = 10, 10
    c.eval.rerank_top = 20
    c.later_steps = 20
    c.ablation_undenoised = True
    if arg == "runlocal":
        common.tiny_pipeline(c)
    return c
