"""Metrics against values computed by hand."""

import pytest

from rqa_jax.eval.metrics import mrr_at_k, recall_at_k

QRELS = {"q1": {"a": 1}, "q2": {"b": 1, "c": 2}, "q3": {"z": 1}, "q4": {"d": 0, "e": 1}}
RUN = {
    "q1": [("x", 3.0), ("a", 2.0), ("y", 1.0)],  # first relevant at rank 2
    "q2": [("c", 9.0), ("b", 8.0)],  # rank 1
    "q4": [("d", 5.0), ("f", 4.0), ("g", 3.0), ("e", 2.0)],  # d has rel 0: first relevant at 4
    # q3 missing from the run: counts 0
}


def test_mrr_divides_by_all_judged_queries():
    assert mrr_at_k(QRELS, RUN, 10) == pytest.approx((1 / 2 + 1 + 0 + 1 / 4) / 4)
    assert mrr_at_k(QRELS, RUN, 3) == pytest.approx((1 / 2 + 1) / 4)


def test_recall_is_a_hit_rate():
    assert recall_at_k(QRELS, RUN, 1) == pytest.approx(1 / 4)
    assert recall_at_k(QRELS, RUN, 2) == pytest.approx(2 / 4)
    assert recall_at_k(QRELS, RUN, 4) == pytest.approx(3 / 4)
