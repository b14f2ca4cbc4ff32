"""RocketQA's data operations on hand-made runs and cross-encoder scores: thresholds, top-up
from ranks 51-1000, no positive as a negative, k per positive, seeded draws, augmentation
selection and skips, resumable scoring, and the TSV written for the original's reader."""

import json

import numpy as np
import pytest

from rqa_jax.data import formats as F
from rqa_jax.data import lists as L


def _run(qid, n=1000):
    return {qid: [(f"p{i}", 1000.0 - i) for i in range(n)]}


def test_mine_excludes_labelled_positives_and_cuts_at_depth():
    run = {**_run("q1", 20), **_run("q2", 5), **_run("unjudged", 5)}
    mined = L.mine(run, {"q1": {"p0": 1, "p3": 1}, "q2": {"p9": 1}}, depth=10)
    assert [p for p, _ in mined["q1"]] == ["p1", "p2", "p4", "p5", "p6", "p7", "p8", "p9"]
    assert len(mined["q2"]) == 5 and "unjudged" not in mined


def test_denoise_thresholds_k_per_positive_and_never_a_positive():
    run = _run("q", 1000)
    qrels = {"q": {"p0": 1, "p7": 1}}
    # top 50: p1..p9 score high (likely false negatives) except p2, p4; the rest low
    scores = {"q": {f"p{i}": (0.95 if i < 10 and i not in (2, 4) else 0.01) for i in range(50)}}
    pairs, st, dropped = L.denoise(run, qrels, scores, per_positive=4, seed=3, pick="random")
    negs = [n for _, n in pairs["q"]]
    assert len(negs) == 8 and len(set(negs)) == 8  # 4 per positive, distinct
    assert {p for p, _ in pairs["q"]} == {"p0", "p7"}
    assert sum(p == "p0" for p, _ in pairs["q"]) == 4
    assert all(scores["q"][n] < 0.1 for n in negs)  # all from the top 50, below tau
    assert not {"p0", "p7"} & set(negs)
    assert dropped["q"] == {f"p{i}" for i in (1, 3, 5, 6, 8, 9)}
    assert st.dropped_as_false_negatives == 6 and st.top_candidates == 48
    assert st.topped_up_queries == 0 and st.negatives == 8
    again, _, _ = L.denoise(run, qrels, scores, per_positive=4, seed=3, pick="random")
    other, _, _ = L.denoise(run, qrels, scores, per_positive=4, seed=4, pick="random")
    assert again == pairs and other != pairs  # seeded


def test_denoise_tops_up_at_random_from_ranks_51_to_1000():
    run = _run("q", 1000)
    scores = {"q": {f"p{i}": 0.5 if i != 10 else 0.05 for i in range(50)}}  # one usable
    pairs, st, _ = L.denoise(run, {"q": {"p0": 1, "p300": 1}}, scores, per_positive=4, seed=0)
    negs = [n for _, n in pairs["q"]]
    assert "p10" in negs and len(set(negs)) == 8
    tail = [int(n[1:]) for n in negs if n != "p10"]
    assert all(50 <= r < 1000 for r in tail) and 300 not in tail
    assert st.topped_up_queries == 1 and st.topped_up_negatives == 7
    assert st.queries_short_of_negatives == 0


def test_denoise_rank_pick_is_the_released_scripts_order():
    """The default: the best-ranked usable candidates, written from the last chosen back
    (the released script pops its list), positives in turn; addition pids never negatives."""
    run = _run("q", 100)
    scores = {"q": {f"p{i}": 0.0 for i in range(50)}}
    pairs, _, _ = L.denoise(run, {"q": {"p1": 1}}, scores, per_positive=4)
    assert pairs["q"] == [("p1", "p4"), ("p1", "p3"), ("p1", "p2"), ("p1", "p0")]
    two, _, _ = L.denoise(run, {"q": {"p1": 1, "p5": 1}}, scores, per_positive=2,
                          not_negatives={"q": {"p2": 1}, "other": {"p3": 1}})  # fmt: skip
    assert two["q"] == [("p1", "p6"), ("p5", "p4"), ("p1", "p3"), ("p5", "p0")]


def test_v2_lists_never_take_addition_passages_as_negatives():
    st = L.ListStats()
    ranked = [f"p{i}" for i in range(6)]
    rand = L.sampled_list("q", ranked, ["p0"], True, st, 5, 6, 0, not_negatives=["p3"])
    assert rand[0] == "p0" and sorted(rand[1:]) == ["p1", "p2", "p4", "p5"]
    scores = dict.fromkeys(ranked, 0.0)
    aug = L.denoised_list(
        "q", ranked, ["p0"], scores, st, 5, 6, 6, 0.1, 0.9, 0, not_negatives=["p2"]
    )
    assert aug[0] == "p0" and sorted(aug[1:]) == ["p1", "p3", "p4", "p5"]
    assert L.sampled_list("q", ranked, ["p0"], True, st, 6, 6, 0, not_negatives=["p3"]) is None


def test_denoise_refuses_unscored_top_candidates():
    with pytest.raises(KeyError, match=r"'q'.*'p3' has no cross-encoder score"):
        L.denoise(_run("q", 60), {"q": {"p0": 1}}, {"q": {f"p{i}": 0.0 for i in range(3)}})


def test_undenoised_takes_top_candidates_whatever_their_score():
    pairs = L.undenoised(_run("q", 1000), {"q": {"p0": 1}}, per_positive=4, top=50, seed=1)
    negs = [int(n[1:]) for _, n in pairs["q"]]
    assert len(set(negs)) == 4 and all(1 <= r < 50 for r in negs)


def test_false_negative_quality_against_planted():
    run = _run("q", 100)
    q = L.false_negative_quality(
        {"q": {"p1", "p2", "p3"}}, {"q": {"p1": 1, "p2": 1, "p5": 1, "p90": 1}}, run
    )
    assert q == {"dropped": 3, "planted_in_top": 3, "precision": 2 / 3, "recall": 2 / 3}


def test_augment_selects_confident_positive_and_counts_skips():
    run = {**_run("a", 60), **_run("b", 60), **_run("c", 60)}
    scores = {
        "a": {f"p{i}": s for i, s in enumerate([0.5, 0.97, 0.92] + [0.02] * 47)},
        "b": {f"p{i}": 0.6 for i in range(50)},  # nothing above 0.9
        "c": {f"p{i}": 0.95 for i in range(50)},  # confident, but no negative below 0.1
    }
    out, st = L.augment(run, scores, negatives=4, seed=0)
    assert list(out) == ["a"]
    assert {p for p, _ in out["a"]} == {"p1"}  # the highest score, not the first above tau
    negs = [n for _, n in out["a"]]
    assert len(set(negs)) == 4 and all(scores["a"][n] < 0.1 for n in negs)
    assert st.as_dict() == {"questions": 3, "pseudo_positives": 1, "skipped_no_confident_positive": 1,
                            "skipped_no_negative": 1, "negatives": 4}  # fmt: skip


def test_denoised_tsv_loads_with_the_rocketqa_reader_and_round_trips(tmp_path):
    corpus = {"p0": ("Title", "positive text"), "p1": (None, "negative text")}
    n = L.write_dual(tmp_path / "de1.tsv", {"q": [("p0", "p1")]}, {"q": "a question"}, corpus)
    assert n == 1
    assert (
        tmp_path / "de1.tsv"
    ).read_text() == "a question\tTitle\tpositive text\t-\tnegative text\t0\n"
    rows = list(F.iter_dual_train(tmp_path / "de1.tsv"))
    assert rows == [F.DualTrainRow("a question", "Title", "positive text", None, "negative text")]
    F.write_dual_train(tmp_path / "again.tsv", rows)
    assert (tmp_path / "again.tsv").read_bytes() == (tmp_path / "de1.tsv").read_bytes()


def test_score_candidates_resumes_after_a_crash_without_rescoring(tmp_path):
    run = {f"q{i}": [(f"p{j}", 0.0) for j in range(8)] for i in range(10)}
    queries = {q: f"question {q}" for q in run}
    corpus = {f"p{j}": (None, f"text {j}") for j in range(8)}
    calls = []

    def scorer(qs, paras, titles):
        calls.append(len(qs))
        if len(calls) == 3:
            raise RuntimeError("killed")
        return [float(len(q) + len(p)) for q, p in zip(qs, paras, strict=True)]

    out = tmp_path / "ce.scores"
    with pytest.raises(RuntimeError):
        L.score_candidates(
            scorer, run, queries, corpus, out, top=5, queries_per_chunk=3, progress=False
        )
    assert calls == [15, 15, 15]
    scores = L.score_candidates(
        scorer, run, queries, corpus, out, top=5, queries_per_chunk=3, progress=False
    )
    assert calls == [15, 15, 15, 15, 5]  # chunks 1-2 kept, 3 redone, then 3 + the last query
    assert sorted(scores) == sorted(run) and all(len(v) == 5 for v in scores.values())
    assert scores["q0"]["p1"] == len("question q0") + len("text 1")
    assert len(out.read_text().splitlines()) == 50
    np.testing.assert_equal(L.read_scores(out), scores)


def test_commands_over_files_mine_denoise_augment(tmp_path):
    """`rqa mine`, `rqa denoise`, `rqa augment` on users' own files, as documented."""
    from rqa_jax.cli import main as rqa

    corpus = {f"p{i}": (f"T{i}" if i % 2 else None, f"passage number {i}") for i in range(80)}
    F.write_id_text(
        tmp_path / "corpus.tsv", [F.TextRecord(p, t, ti) for p, (ti, t) in corpus.items()]
    )
    F.write_id_text(
        tmp_path / "queries.tsv", [F.TextRecord("q", "a question"), F.TextRecord("u", "another")]
    )
    F.write_qrels(tmp_path / "qrels.tsv", {"q": {"p0": 1}})
    run = {q: [(f"p{i}", 80.0 - i) for i in range(80)] for q in ("q", "u")}
    F.write_run(tmp_path / "run", run)
    scores = {q: [(f"p{i}", 0.95 if i in (0, 1) else 0.01) for i in range(50)] for q in ("q", "u")}
    F.write_run(tmp_path / "scores", scores, fmt="rocketqa")
    common = ["--queries", str(tmp_path / "queries.tsv"), "--corpus", str(tmp_path / "corpus.tsv")]

    assert rqa(["mine", "--run", str(tmp_path / "run"), "--qrels", str(tmp_path / "qrels.tsv"), "--depth", "10",
                "--output", str(tmp_path / "mined")]) == 0  # fmt: skip
    assert [p for p, _ in F.read_run(tmp_path / "mined")["q"]] == [f"p{i}" for i in range(1, 10)]

    assert rqa(["denoise", "--run", str(tmp_path / "run"), "--qrels", str(tmp_path / "qrels.tsv"), "--scores",
                str(tmp_path / "scores"), *common, "--output", str(tmp_path / "de1.tsv")]) == 0  # fmt: skip
    rows = list(F.iter_dual_train(tmp_path / "de1.tsv"))
    assert len(rows) == 4 and {r.pos_para for r in rows} == {"passage number 0"}
    assert "passage number 1" not in {
        r.neg_para for r in rows
    }  # scored 0.95: a likely false negative
    stats = json.loads((tmp_path / "de1.tsv.stats.json").read_text())
    assert stats["dropped_as_false_negatives"] == 1 and stats["lines"] == 4

    assert rqa(["augment", "--run", str(tmp_path / "run"), "--scores", str(tmp_path / "scores"), *common,
                "--output", str(tmp_path / "aug.tsv"), "--negatives", "2"]) == 0  # fmt: skip
    rows = list(F.iter_dual_train(tmp_path / "aug.tsv"))
    assert len(rows) == 4 and {r.query for r in rows} == {"a question", "another"}
    assert {r.pos_para for r in rows} == {
        "passage number 0"
    }  # the best-scored of 0.95 ties: the first
    assert rqa(["denoise", "--run", str(tmp_path / "run"), "--qrels", str(tmp_path / "nope.tsv"), "--scores",
                str(tmp_path / "scores"), *common, "--output", str(tmp_path / "x.tsv")]) == 1  # fmt: skip


def test_sampled_lists_positive_first_distinct_negatives_from_top_n():
    run = {**_run("q", 200), **_run("unjudged", 200)}
    lists, st = L.sampled_lists(run, {"q": {"p5": 1, "p9": 1}}, list_size=8, depth=100, seed=2)
    assert list(lists) == ["q"] and lists["q"][0] == "p5"
    negs = lists["q"][1:]
    assert (
        len(set(negs)) == 7 and not {"p5", "p9"} & set(negs) and all(int(n[1:]) < 100 for n in negs)
    )
    assert (
        L.sampled_lists(run, {"q": {"p5": 1}}, 8, 100, seed=2)[0]
        == L.sampled_lists(run, {"q": {"p5": 1}}, 8, 100, seed=2)[0]
    )
    assert st.lists == 1


def test_denoised_lists_drop_false_negatives_and_add_confident_positives():
    run = {**_run("q", 100), **_run("u", 100), **_run("v", 100)}
    scores = {
        "q": {f"p{i}": (0.95 if i in (1, 2) else 0.5 if i == 3 else 0.01) for i in range(10)},
        "u": {f"p{i}": (0.97 if i == 4 else 0.01) for i in range(10)},  # unlabeled, confident
        "v": {f"p{i}": 0.5 for i in range(10)},  # unlabeled, nothing confident
    }
    lists, st = L.denoised_lists(run, {"q": {"p0": 1}}, scores, list_size=6, top=10, seed=0)
    assert lists["q"][0] == "p0" and not {"p1", "p2", "p3"} & set(lists["q"])  # FN and unsure out
    assert all(scores["q"][p] < 0.1 for p in lists["q"][1:])
    assert lists["u"][0] == "p4" and "v" not in lists
    assert st.as_dict() == {"lists": 2, "skipped_no_positive": 1, "skipped_too_few_candidates": 0,
                            "pseudo_positive_lists": 1, "excluded_confident": 2,
                            "denoised_positive_lists": 0}  # fmt: skip
    small, st = L.denoised_lists(run, {"q": {"p0": 1}}, scores, list_size=12, top=10, seed=0)
    assert len(small["q"]) == 12 and all(
        int(p[1:]) >= 10 for p in small["q"][7:]
    )  # topped up past top


def test_joint_lists_written_in_rocketqav2_form_and_read_back(tmp_path):
    corpus = {f"p{i}": (None if i % 2 else f"T{i}", f"text {i}") for i in range(6)}
    n = L.write_joint(tmp_path / "v2.tsv", {"q": ["p0", "p1", "p2"], "r": ["p3", "p4", "p5"]},
                      {"q": "first", "r": "second"}, corpus)  # fmt: skip
    back = list(F.iter_joint_lists(tmp_path / "v2.tsv", 3))
    assert n == 2 and [b.labels for b in back] == [(1, 0, 0)] * 2
    assert back[0] == F.JointList(
        "first", ("T0", None, "T2"), ("text 0", "text 1", "text 2"), (1, 0, 0)
    )


def test_joint_reader_treats_extra_positives_as_the_config_says(tmp_path):
    path = tmp_path / "two_pos.tsv"
    path.write_text("q\t-\ta\t1\nq\t-\tb\t1\nq\t-\tc\t0\nr\t-\td\t1\nr\t-\te\t0\nr\t-\tf\t0\n")
    with pytest.raises(F.FormatError, match="extra_positives"):
        list(F.iter_joint_lists(path, 3))
    first = list(F.iter_joint_lists(path, 3, extra_positives="first"))
    assert [b.labels for b in first] == [(1, 0, 0), (1, 0, 0)]
    with pytest.warns(UserWarning, match="skipped 1 lists"):
        assert [b.query for b in F.iter_joint_lists(path, 3, extra_positives="skip")] == ["r"]


def test_rqa_score_command_saves_the_cross_encoders_scores(tmp_path, tiny_tokenizer):
    """`rqa score` on users' files: each query's top candidates scored by the model, saved
    as a run that `rqa denoise` reads; equal to the library's matching()."""
    from test_rerank import make_ce

    from rqa_jax.api import load_cross_encoder
    from rqa_jax.cli import main as rqa

    ce_dir, _, _ = make_ce(tmp_path, "v1", tiny_tokenizer)
    corpus = {
        "p0": ("title", "a big dog"),
        "p1": (None, "the small cats"),
        "p2": (None, "dog para"),
    }
    F.write_id_text(
        tmp_path / "corpus.tsv", [F.TextRecord(p, t, ti) for p, (ti, t) in corpus.items()]
    )
    F.write_id_text(tmp_path / "queries.tsv", [F.TextRecord("q", "what is a dog")])
    F.write_run(tmp_path / "run", {"q": [("p2", 3.0), ("p0", 2.0), ("p1", 1.0)]})
    out = tmp_path / "ce.scores"
    assert rqa(["score", "--model", str(ce_dir), "--run", str(tmp_path / "run"), "--queries",
                str(tmp_path / "queries.tsv"), "--corpus", str(tmp_path / "corpus.tsv"), "--top", "2",
                "--output", str(out), "--no-progress"]) == 0  # fmt: skip
    got = L.read_scores(out)
    want = load_cross_encoder(ce_dir).matching(
        ["what is a dog"] * 2, ["dog para", "a big dog"], [None, "title"]
    )
    assert list(got) == ["q"] and list(got["q"]) == ["p2", "p0"]  # the top 2, in the run's order
    # saved with 6 decimals; batch shapes differ from the one-off call: float32 noise ~1e-6
    np.testing.assert_allclose([got["q"]["p2"], got["q"]["p0"]], want, atol=2e-5)


def test_denoised_positives_head_lists_of_their_own():
    """A labelled question's confident unlabelled passages (> τ_pos, best first, at most
    ``most``) each head a list whose negatives are below τ_neg and never a labelled positive."""
    ranked = [f"p{i}" for i in range(12)]
    scores = {
        "p0": 0.2,
        "p1": 0.95,
        "p2": 0.99,
        "p3": 0.92,
        **{f"p{i}": 0.01 for i in range(4, 12)},
    }
    st = L.ListStats()
    lists = L.denoised_positive_lists("q", ranked, ["p0"], scores, st, 4, 2, top=12, depth=12)
    assert [lst[0] for lst in lists] == ["p2", "p1"]  # the two most confident, p3 left out
    for lst in lists:
        assert len(lst) == 4 and all(scores[p] < 0.1 for p in lst[1:]) and "p0" not in lst
    assert (st.denoised_positive_lists, st.lists) == (2, 2)
    assert L.denoised_positive_lists("q", ranked, ["p0"], scores, st, 4, 0, top=12, depth=12) == []
    assert L.denoised_positive_lists("q", ranked, [], scores, st, 4, 2, top=12, depth=12) == []
