"""RocketQAv2 on the sample (``rqa pipeline v2``), on two CPU cores: the v1 demo's de0 and
ce as the initial retriever and re-ranker, hybrid lists of 8 (the paper's ablation size),
joint training, and both ablations (static distillation, the other KL variant).

    make demo-v2   # reuses demo_out/v1 when `make demo-v1` ran, else runs its first stages

Shrunk to fit a CPU, and why:
* the models are the v1 demo's (one tied MiniLM retriever with raw [CLS]; a MiniLM
  re-ranker with the v1 head, continued as its log-odds), with their input settings;
* lists of 8 rather than 128; the re-ranker denoises the top 10 (the sample's entities have
  4 passages each, as in the v1 demo); rand negatives come from the top 100;
* a few hundred lists per run, at a rate above the paper's 1e-5 (a constant 1e-5 moves
  a model little in so few steps).
"""

import ml_collections

from configs import common, demo_pipeline_v1


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    common.check_variant(arg, __file__)
    c = common.get_pipeline_v2_config()
    c.v1 = demo_pipeline_v1.get_config()
    de, ce = c.v1.retriever, c.v1.reranker
    j = c.joint
    j.retriever.tie_towers, j.retriever.pooling, j.retriever.normalize = True, "cls", False
    j.reranker.cross_head = "pooler_logit"
    j.title_form, j.q_max_len, j.p_max_len = de.title_form, de.q_max_len, de.p_max_len
    j.pair_form, j.cross_max_len, j.cross_q_max_len = ce.pair_form, ce.cross_max_len, 0
    j.dtype, j.remat = "float32", False
    j.list_size, j.train_batch_size = 8, 8
    j.learning_rate, j.warmup_proportion, j.weight_decay = 2e-5, 0.0, 0.01
    j.num_epochs, j.num_train_steps = 0, 60
    j.log_every, j.eval_every, j.checkpoint_every, j.eval_batch_size = 10, 0, 20, 128
    c.lists.depth, c.lists.top = 100, 10
    c.eval.depth, c.eval.rerank_top = 1000, 20
    c.ablation_static_distill = c.ablation_other_variant = True
    if arg == "runlocal":
        c.v1 = demo_pipeline_v1.get_config("runlocal")
        common.tiny_joint(c.joint)
        c.joint.reranker.cross_head = "pooler_logit"
        c.lists.depth = c.eval.depth = 100
        c.guard.allow_weak_reranker = True  # a tiny random teacher: weak by design
    return c
