"""Metrics by hand, against trec_eval (pytrec_eval) on a random run, and DPR answer matching."""

import numpy as np
import pytest

from rqa_jax.eval import answers
from rqa_jax.eval.metrics import evaluate, ndcg_at_k, recall_fraction_at_k


def test_ndcg_and_recall_fraction_by_hand():
    qrels = {"q": {"a": 2, "b": 1, "c": 1}}
    run = {"q": [("b", 3.0), ("x", 2.0), ("a", 1.0)]}
    dcg = 1 / np.log2(2) + 2 / np.log2(4)
    idcg = 2 / np.log2(2) + 1 / np.log2(3) + 1 / np.log2(4)
    assert ndcg_at_k(qrels, run, 3) == pytest.approx(dcg / idcg)
    assert recall_fraction_at_k(qrels, run, 3) == pytest.approx(2 / 3)
    assert recall_fraction_at_k(qrels, run, 1) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="unknown metric"):
        evaluate(qrels, run, ["map@10"])


def test_metrics_equal_trec_eval_on_a_random_run():
    pytrec_eval = pytest.importorskip("pytrec_eval")
    rng = np.random.default_rng(0)
    docs = [f"d{i}" for i in range(200)]
    qrels, run = {}, {}
    for q in range(50):
        judged = rng.choice(docs, size=rng.integers(1, 6), replace=False)
        qrels[f"q{q}"] = {d: int(rng.integers(1, 4)) for d in judged}
        scores = rng.permutation(200).astype(float)  # distinct: no tie-breaking differences
        ranked = sorted(zip(docs, scores, strict=True), key=lambda x: -x[1])[:100]
        run[f"q{q}"] = [(d, float(s)) for d, s in ranked]
    ours = evaluate(qrels, run, ["mrr@10", "ndcg@10", "recall_frac@100", "recall@10"])
    top10 = {q: dict(docs[:10]) for q, docs in run.items()}
    full = {q: dict(docs) for q, docs in run.items()}
    rr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank", "success.10"}).evaluate(top10)
    other = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.100"}).evaluate(full)
    mean = lambda res, key: np.mean([v[key] for v in res.values()])  # noqa: E731
    assert ours["mrr@10"] == pytest.approx(mean(rr, "recip_rank"), abs=1e-6)
    assert ours["recall@10"] == pytest.approx(mean(rr, "success_10"), abs=1e-6)
    assert ours["ndcg@10"] == pytest.approx(mean(other, "ndcg_cut_10"), abs=1e-6)
    assert ours["recall_frac@100"] == pytest.approx(mean(other, "recall_100"), abs=1e-6)


def test_dpr_answer_matching():
    assert answers.has_answer("He moved to the U.S. in 1990.", ["u.s."])
    assert answers.has_answer("Caf\u00e9 Tacuba played", ["cafe\u0301 tacuba"])  # NFD both sides
    assert answers.has_answer("THE BEATLES", ["the Beatles"])
    assert not answers.has_answer("a category of things", ["cat"])  # tokens, not substrings
    run = {"q1": [("p1", 2.0), ("p2", 1.0)], "q2": [("p1", 1.0)]}
    passages = {"p1": "nothing here", "p2": "Paris is the capital"}
    acc = answers.top_k_accuracy(run, {"q1": ["Paris"], "q2": ["Rome"]}, passages, ks=(1, 2))
    assert acc == {"top1_accuracy": 0.0, "top2_accuracy": 0.5}
    with pytest.raises(KeyError, match="'p9'"):
        answers.top_k_accuracy({"q1": [("p9", 1.0)]}, {"q1": ["x"]}, passages)
