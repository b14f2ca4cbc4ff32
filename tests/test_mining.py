"""RocketQA's data steps over binary runs (rqa_jax.data.mining) write exactly what the
id-based steps of rqa_jax.data.lists write on the same run: scores, mined candidates,
denoised and undenoised negatives, pseudo labels and both kinds of v2 lists. Chunked and
split over processes, the parts merge to the same file; a step stopped mid-way resumes to
the same output without redoing finished chunks; a run query without text is named."""

from __future__ import annotations

import random
import zlib

import numpy as np
import pytest

from rqa_jax.data import binrun
from rqa_jax.data import formats as F
from rqa_jax.data import lists as L
from rqa_jax.data import mining as M
from rqa_jax.data.binrun import BinaryRun
from rqa_jax.data.store import CorpusStore, ensure_corpus
from rqa_jax.errors import MissingIdError


def scorer(queries, paras, titles):
    """A deterministic stand-in re-ranker over the texts: spread over [0, 1), with scores
    above τ_pos and below τ_neg, so every branch of the steps is taken."""
    return [
        zlib.crc32(f"{q}|{t}|{p}".encode()) % 1000 / 1000
        for q, p, t in zip(queries, paras, titles, strict=True)
    ]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mining")
    rng = random.Random(7)
    pids = [f"d{(i * 7919) % 10007}" for i in range(500)]
    passages = [
        (p, f"title {i % 13}" if i % 3 else None, f"passage {p} words {i}")
        for i, p in enumerate(pids)
    ]
    F.write_id_text(
        tmp / "corpus.tsv", [F.TextRecord(p, x, t) for p, t, x in passages], with_title=True
    )
    store = CorpusStore(
        ensure_corpus(tmp / "cache", [tmp / "corpus.tsv"], lambda: iter(passages), progress=False)
    )
    queries = {f"q{i}": f"question {i}" for i in range(90)}
    qrels = {}
    run = {}
    for q in queries:
        ranked = rng.sample(pids, 60)
        if int(q[1:]) % 6:  # judged; a positive often inside the candidates
            pos = rng.sample(ranked[:20], 1) if rng.random() < 0.6 else rng.sample(pids, 2)
            qrels[q] = dict.fromkeys(pos, 1)
        run[q] = [(p, 100.0 - r) for r, p in enumerate(ranked)]
    F.write_run(tmp / "train.trec", run)
    binrun.text_to_binary(tmp / "train.trec", tmp / "train.bin", store.rows_of, len(store), store.fingerprint(),
                          chunk_queries=16)  # fmt: skip
    corpus = {p: (t, x) for p, t, x in passages}
    return (
        tmp,
        store,
        corpus,
        queries,
        qrels,
        F.read_run(tmp / "train.trec"),
        BinaryRun(tmp / "train.bin"),
    )


def _scores(tmp, name, run, queries, store, top, selected=None, processes=1):
    w = M.scores_writer(run, tmp / name, top, selected, chunk_queries=8)
    for p in range(processes):
        M.score_run(scorer, run, w, queries, store, selected, p, processes, progress=False)
    assert w.finish()
    return BinaryRun(tmp / name)


def _split(out, n, step, processes=2, chunk=7):
    for p in range(processes):
        step(p, processes, chunk)
    return M.merge_parts(out, n, chunk)


def test_scores_equal_the_id_based_scores(data):
    tmp, store, corpus, queries, qrels, run, b = data
    judged = {q: r[:20] for q, r in run.items() if q in qrels}
    text = L.score_candidates(scorer, judged, queries, corpus, tmp / "ce.txt", 20, progress=False)
    sel = M.judged_rows(b, qrels)
    scores = _scores(tmp, "ce_judged.bin", b, queries, store, 20, sel, processes=2)
    assert scores.qids == list(judged)
    for j, q in enumerate(scores.qids):
        got = dict(zip(store.pid_of_rows(scores.row(j)[0]), scores.row(j)[1].tolist(), strict=True))
        assert got.keys() == text[q].keys()
        np.testing.assert_allclose([got[p] for p in text[q]], list(text[q].values()), atol=5e-7)


def test_mine_denoise_augment_and_lists_write_what_the_id_based_steps_write(data):
    tmp, store, corpus, queries, qrels, run, b = data
    judged_run = {q: r for q, r in run.items() if q in qrels}
    sel = M.judged_rows(b, qrels)
    scores = _scores(tmp, "ce.bin", b, queries, store, 20, sel)
    id_scores = {q: dict(zip(store.pid_of_rows(scores.row(j)[0]), scores.row(j)[1].tolist(), strict=True))
                 for j, q in enumerate(scores.qids)}  # fmt: skip

    # mine
    M.mine_run(b, qrels, store, tmp / "mined.bin", 30, chunk_queries=5)
    mined = L.mine(run, qrels, 30)
    got = dict(binrun.iter_run(tmp / "mined.bin", store.pid_of_rows))
    assert list(got) == list(mined)
    assert {q: [p for p, _ in r] for q, r in got.items()} == {
        q: [p for p, _ in r] for q, r in mined.items()
    }

    # denoise (random and rank picks), with the planted-false-negative counts
    planted = {q: dict.fromkeys([r[3][0], r[40][0]], 1) for q, r in list(judged_run.items())[::4]}
    for pick in ("random", "rank"):
        pairs, stats, dropped = L.denoise(judged_run, qrels, id_scores, 2, 20, 50, 0.3, 5, pick)
        L.write_dual(tmp / f"want.{pick}.tsv", pairs, queries, corpus)
        out = tmp / f"dn.{pick}.tsv"
        counts = _split(out, len(sel), lambda p, n, c, out=out, pick=pick: M.denoise_run(
            b, qrels, scores, queries, store, out, 2, 20, 50, 0.3, 5, pick, M.Planted(planted),
            c, p, n, False))  # fmt: skip
        assert out.read_text() == (tmp / f"want.{pick}.tsv").read_text()
        assert {k: counts[k] for k in stats.as_dict()} == stats.as_dict()
        assert M.Planted.quality(counts) == L.false_negative_quality(
            dropped, planted, judged_run, 20
        )
    assert stats.dropped_as_false_negatives > 0 and stats.topped_up_queries > 0

    # the undenoised ablation
    L.write_dual(tmp / "want.und.tsv", L.undenoised(judged_run, qrels, 2, 20, 5), queries, corpus)
    _split(tmp / "und.tsv", len(sel), lambda p, n, c: M.denoise_run(
        b, qrels, None, queries, store, tmp / "und.tsv", 2, 20, 50, 0.3, 5, "rank", None, c, p, n, False))  # fmt: skip
    assert (tmp / "und.tsv").read_text() == (tmp / "want.und.tsv").read_text()

    # augment (every query as an unlabeled question)
    all_scores = _scores(tmp, "ce_all.bin", b, queries, store, 20)
    all_id = {q: dict(zip(store.pid_of_rows(all_scores.row(j)[0]), all_scores.row(j)[1].tolist(), strict=True))
              for j, q in enumerate(all_scores.qids)}  # fmt: skip
    pairs, st = L.augment(run, all_id, 3, 20, 0.95, 0.2, 1)
    assert st.pseudo_positives > 0 and st.skipped_no_confident_positive > 0
    L.write_dual(tmp / "want.aug.tsv", pairs, queries, corpus)
    counts = _split(tmp / "aug.tsv", len(b), lambda p, n, c: M.augment_run(
        b, all_scores, queries, store, tmp / "aug.tsv", 3, 20, 0.95, 0.2, 1, qrels, c, p, n, False))  # fmt: skip
    assert (tmp / "aug.tsv").read_text() == (tmp / "want.aug.tsv").read_text()
    assert {k: counts[k] for k in st.as_dict()} == st.as_dict()
    assert counts["pseudo_right"] == sum(ps[0][0] in qrels.get(q, {}) for q, ps in pairs.items())

    # RocketQAv2's lists: sampled ("rand") and denoised ("aug")
    rand, st = L.sampled_lists(judged_run, qrels, 6, 50, 2)
    L.write_joint(tmp / "want.rand.tsv", rand, queries, corpus)
    counts = _split(tmp / "rand.tsv", len(sel), lambda p, n, c: M.lists_run(
        b, qrels, None, queries, store, tmp / "rand.tsv", 6, 20, 50, 0.2, 0.95, 2, sel, c, p, n, False))  # fmt: skip
    assert (tmp / "rand.tsv").read_text() == (tmp / "want.rand.tsv").read_text()
    assert {k: counts[k] for k in st.as_dict()} == st.as_dict()
    aug, st = L.denoised_lists(run, {}, all_id, 6, 20, 50, 0.2, 0.95, 2)
    assert st.pseudo_positive_lists > 0 and st.skipped_no_positive > 0
    L.write_joint(tmp / "want.auglists.tsv", aug, queries, corpus)
    counts = _split(tmp / "auglists.tsv", len(b), lambda p, n, c: M.lists_run(
        b, {}, all_scores, queries, store, tmp / "auglists.tsv", 6, 20, 50, 0.2, 0.95, 2, None, c, p, n, False))  # fmt: skip
    assert (tmp / "auglists.tsv").read_text() == (tmp / "want.auglists.tsv").read_text()
    assert {k: counts[k] for k in st.as_dict()} == st.as_dict()
    # labelled questions: each ground-truth list, then lists headed by denoised positives
    counts = _split(tmp / "dp.tsv", len(b), lambda p, n, c: M.lists_run(
        b, qrels, all_scores, queries, store, tmp / "dp.tsv", 6, 20, 50, 0.2, 0.95, 2, None, c, p, n, False,
        None, 2))  # fmt: skip
    blocks = list(F.iter_joint_lists(tmp / "dp.tsv", 6))
    assert counts["denoised_positive_lists"] > 0 and len(blocks) == counts["lists"]
    text = {t: pid for pid, (_, t) in corpus.items()}
    heads = [text[b_.paras[0]] for b_ in blocks]
    extra = [(b_, h) for b_, h in zip(blocks, heads, strict=True)
             if not any(h in qrels.get(q, {}) for q in qrels) and b_.query in {queries[q] for q in qrels}]  # fmt: skip
    assert extra and all(max(all_id[q].get(h, 0.0) for q in all_id) > 0.95 for _, h in extra)


def test_a_step_stopped_mid_way_resumes_to_the_same_output(data):
    tmp, store, _corpus, queries, qrels, _run, b = data
    full = _scores(tmp, "full.bin", b, queries, store, 10)
    calls = []

    def failing(q, p, t):
        calls.append(len(q))
        if len(calls) == 3:
            raise KeyboardInterrupt  # as if killed inside the third chunk
        return scorer(q, p, t)

    w = M.scores_writer(b, tmp / "cut.bin", 10, chunk_queries=8)
    with pytest.raises(KeyboardInterrupt):
        M.score_run(failing, b, w, queries, store, progress=False)
    assert w.done_queries() == 16 and not w.finish()
    calls.clear()
    w = M.scores_writer(b, tmp / "cut.bin", 10, chunk_queries=8)  # the command run again
    M.score_run(failing if False else lambda q, p, t: calls.append(1) or scorer(q, p, t), b, w, queries, store,
                progress=False)  # fmt: skip
    assert w.finish() and len(calls) == w.n_chunks - 2  # the two finished chunks kept
    np.testing.assert_array_equal(BinaryRun(tmp / "cut.bin").scores, full.scores)

    # a TSV step: a chunk that never finished (its counts file missing) is written again
    sel = M.judged_rows(b, qrels)
    out = tmp / "resume.tsv"

    def step(p, n, c):
        M.denoise_run(
            b, qrels, None, queries, store, out, 2, 20, 50, 0.3, 5, "random", None, c, p, n, False
        )

    _split(out, len(sel), step, processes=1)
    want = out.read_text()
    tsv, counts = M._part(out, 2)
    counts.unlink()
    tsv.write_text("torn\n")
    with pytest.raises(RuntimeError, match="chunk 2 of"):
        M.merge_parts(out, len(sel), 7)
    _split(out, len(sel), step, processes=2)
    assert out.read_text() == want


def test_run_queries_without_text_are_named(data):
    tmp, store, _corpus, queries, _qrels, _run, b = data
    w = M.scores_writer(b, tmp / "x.bin", 5)
    with pytest.raises(MissingIdError, match=r"train\.bin: query 'q0' is not in the queries"):
        M.score_run(
            scorer, b, w, {q: t for q, t in queries.items() if q != "q0"}, store, progress=False
        )
