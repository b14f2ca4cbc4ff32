"""The re-ranker's dev diagnostics against values worked out by hand on a tiny run, and the
guard that stops a pipeline whose re-ranker does not beat its retriever."""

import math

import numpy as np
import pytest

from rqa_jax.eval import reranker_check as RC

QRELS = {"q1": {"p1": 1}, "q2": {"p5": 1, "p6": 1}, "q3": {"p9": 1}, "q4": {"p7": 0}}
RETRIEVED = {  # q3's positive was not retrieved; q4 has no positive judged (left out)
    "q1": [("p2", 9.0), ("p1", 8.0), ("p3", 7.0)],
    "q2": [("p4", 9.0), ("p5", 8.0), ("p6", 7.0)],
    "q3": [("p8", 9.0), ("p10", 8.0), ("p11", 7.0)],
    "q4": [("p7", 9.0)],
}
RERANKED = {
    "q1": [("p1", 0.95), ("p2", 0.2), ("p3", 0.05)],
    "q2": [("p4", 0.6), ("p6", 0.5), ("p5", 0.05)],
    "q3": [("p10", 0.3), ("p8", 0.01), ("p11", 0.0)],
    "q4": [("p7", 0.99)],
}


def diagnostics() -> dict:
    return RC.compare(
        QRELS, RETRIEVED, RERANKED, rerank_top=3, denoise_top=2, tau_neg=0.1, tau_pos=0.9
    )


def test_reciprocal_ranks_count_only_the_candidates_within_depth():
    judged = {q: v for q, v in QRELS.items() if q != "q4"}
    assert RC.reciprocal_ranks(judged, RETRIEVED).tolist() == [0.5, 0.5, 0.0]
    assert RC.reciprocal_ranks(judged, RETRIEVED, depth=1).tolist() == [0.0, 0.0, 0.0]
    assert RC.reciprocal_ranks(judged, {}).tolist() == [0.0, 0.0, 0.0]  # absent queries score 0


def test_paired_difference_and_its_standard_error_by_hand():
    d = diagnostics()
    # retriever RR (1/2, 1/2, 0), re-ranker RR (1, 1/2, 0): differences (1/2, 0, 0)
    assert d["retriever_mrr@10"] == pytest.approx(1 / 3)
    assert d["reranker_mrr@10"] == pytest.approx(1 / 2)
    diff = d["difference"]
    # mean 1/6; sample variance ((1/3)^2 + 2 (1/6)^2) / 2 = 1/12; s.e. sqrt(1/12 / 3) = 1/6
    assert diff["mean"] == pytest.approx(1 / 6) and diff["se"] == pytest.approx(1 / 6)
    assert (diff["queries"], diff["better"], diff["worse"]) == (3, 1, 0)
    assert math.isnan(RC.paired_difference(np.array([1.0]), np.array([0.0]))["se"])


def test_calibration_by_hand():
    cal = diagnostics()["calibration"]
    # positives among the scored: p1 0.95, p6 0.5, p5 0.05; the other six: .2 .05 .6 .3 .01 0
    assert cal["positives"]["count"] == 3 and cal["others"]["count"] == 6
    assert cal["positives"]["mean"] == pytest.approx(0.5)
    assert cal["positives"]["median"] == pytest.approx(0.5)
    assert cal["others"]["mean"] == pytest.approx(1.16 / 6)
    assert cal["positives_at_or_above_tau_pos"] == pytest.approx(1 / 3)
    assert cal["others_at_or_above_tau_neg"] == pytest.approx(3 / 6)  # p2, p4, p10


def test_denoiser_on_dev_by_hand():
    dn = diagnostics()["denoiser_on_dev"]
    # the retriever's top 2: q1 p2 p1, q2 p4 p5, q3 p8 p10; >= 0.1: p2 p1 p4 p10 (p1 positive)
    assert dn["depth"] == 2 and dn["candidates"] == 6 and dn["dropped"] == 4
    assert dn["judged_positives"] == 2 and dn["positives_kept_out"] == 1  # p1 kept out, p5 not
    assert dn["recall"] == pytest.approx(0.5)
    assert dn["dropped_share"] == pytest.approx(4 / 6)
    assert dn["precision_lower_bound"] == pytest.approx(1 / 4)
    # the depth is capped by what the re-ranker scored
    assert RC.compare(QRELS, RETRIEVED, RERANKED, 3, 50, 0.1, 0.9)["denoiser_on_dev"]["depth"] == 3


def test_guard_passes_stops_or_goes_on_when_allowed():
    d = diagnostics()  # the re-ranker is 1/6 above the retriever
    assert RC.guard(d, 0.1, False, "guard.allow_weak_reranker") == {
        "margin": 0.1, "passed": True, "allowed_weak": False}  # fmt: skip
    with pytest.raises(RC.WeakRerankerError) as err:
        RC.guard(d, 0.2, False, "guard.allow_weak_reranker")
    message = str(err.value)
    for part in ("0.5000", "0.3333", "+0.1667 ± 0.1667", "3 queries", "margin asked is 0.2",
                 "--config.reranker.num_train_steps", "--config.guard.allow_weak_reranker=True"):  # fmt: skip
        assert part in message, part
    assert RC.guard(d, 0.2, True, "guard.allow_weak_reranker") == {
        "margin": 0.2, "passed": False, "allowed_weak": True}  # fmt: skip
