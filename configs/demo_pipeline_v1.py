"""RocketQA v1's four steps on the sample (``rqa pipeline v1``), about 15 minutes on two CPU
cores: all-MiniLM-L6-v2 as retriever and re-ranker initialisation, the sample generated with
planted false negatives (restatements of answers the train qrels do not list) and unlabeled
questions, the undenoised ablation on.

    rqa pipeline v1 --config configs/demo_pipeline_v1.py --workdir demo_out/v1   # make demo-v1

Shrunk to fit a CPU, and why:
* the retriever is RocketQA's (raw [CLS], inner product, no normalisation) on one tied
  MiniLM tower (half the compute of two); 20 steps per dual-encoder stage;
* the re-ranker trains 640 steps without FGM (FGM doubles each step's cost) on one negative
  per query from de0's top 30: the sample's corpus is ~2.3k passages, so that is as hard as
  MS MARCO's top 1000 of 8.8M, and deep enough that restatements are rarely drawn;
* the sample's entities have 4 passages each (plus restatements), so the denoiser and the
  augmentation look at the top 10 rather than MS MARCO's top 50.
"""

import ml_collections

from configs import common, demo_cross, demo_dual


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    common.check_variant(arg, __file__)
    c = common.get_pipeline_v1_config()
    c.data.source = "sample"
    s = c.data.sample
    s.entities_per_type, s.train_queries, s.dev_queries = 60, 600, 200
    s.false_negative_share, s.max_restatements, s.unlabeled_questions = 0.8, 3, 300
    c.retriever = demo_dual.get_config()
    r = c.retriever
    r.pooling, r.normalize, r.logit_scale, r.title_form = "cls", False, 1.0, "rocketqa"
    r.num_train_steps, r.eval_every, r.checkpoint_every = 20, 0, 20
    c.reranker = demo_cross.get_config()
    ce = c.reranker
    ce.data.negative_depth, ce.data.cross_negatives_per_query = 30, 1
    ce.fgm_epsilon = 0.0
    ce.num_train_steps, ce.eval_every, ce.checkpoint_every = 640, 0, 320
    c.mine.depth = c.eval.depth = 1000
    c.denoise.top, c.augment.top = 10, 10
    c.eval.rerank_top = 20
    c.later_steps = 20
    c.ablation_undenoised = True
    if arg == "runlocal":
        common.tiny_pipeline(c)
    return c
