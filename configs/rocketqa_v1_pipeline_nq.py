"""RocketQA v1's four steps on Natural Questions (``rqa pipeline v1``), as the released
``run_nq.sh`` runs them, from DPR's files in ``data.dir`` (``psgs_w100.tsv``,
``nq-train.json``, ``nq-test.qa.csv``; no conversion):

* de0: DPR's training data with its BM25 hard negatives (one per question);
* ce: in de0's top 100, the first passage holding an answer is the positive and a random
  one holding none the negative (``construct_nq_train_ce.py``; answers matched as its
  ``has_answer`` does: lower-cased, spaces removed, in the text or the title);
* denoise: the re-ranker scores de0's top 100; the first answer passage and the first
  non-answer one below τ 0.1 make one line a question (``construct_nq_train_de.py``);
* augment: unlabeled questions (MRQA's, in the paper), 1 negative each;
* every retriever: answer recall@5/20/100 on the test questions (``metric/nq_eval.py``).

    rqa pipeline v1 --config configs/rocketqa_v1_pipeline_nq.py --workdir DIR \\
        --config.data.dir=/path/to/dpr_nq --config.data.unlabeled_queries=mrqa.tsv \\
        --config.retriever.model_dir=ernie_base --config.reranker.model_dir=ernie_large

``runlocal``: the same stages on the sample written in DPR's form, with answer strings
(``data.source="nq_sample"``), a tiny random model, a few steps each.
"""

import ml_collections

from configs import common, cross_encoder_nq, rocketqa_v1_nq


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    common.check_variant(arg, __file__)
    c = common.get_pipeline_v1_config()
    c.retriever = rocketqa_v1_nq.get_config()  # de0 reads data.dir's nq-train.json itself
    c.reranker = cross_encoder_nq.get_config()
    c.data.source = "nq"
    c.mine.depth = 100  # run_nq.sh STEP1-Inference: TOP_K=100
    c.denoise.top = 100  # construct_nq_train_de.py: the re-ranker scores the top 100
    c.denoise.per_positive = 1  # ... and writes one (positive, negative) line a question
    c.augment.negatives = 1  # construct_unlabel_train_de.py: neg_cnt 1 for nq
    c.eval.depth = 100  # NQ reports R@5/20/100
    c.later_epochs = 30  # run_nq.sh: 30 epochs for steps 3-4
    if arg == "runlocal":
        common.tiny_pipeline(c)
        c.data.source = "nq_sample"
        # four steps of a tiny random re-ranker score every pair near 0.5: nothing is below
        # 0.1, so here every non-answer passage passes (the stage runs; its filter is idle)
        c.denoise.tau_neg = 1.0
    return c
