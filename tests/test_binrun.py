"""Binary top-k runs: a text run converted to binary and back is the same run (ids, order,
scores); writing resumes chunk by chunk; truncated, incomplete, foreign-corpus and
out-of-corpus runs are refused with the file and id named; `rqa convert run`, `rqa search
--format binary` and `rqa evaluate` on a binary run agree with the text path."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from rqa_jax.cli import main as rqa
from rqa_jax.data import binrun
from rqa_jax.data import formats as F
from rqa_jax.data.binrun import BinaryRun, BinaryRunError, BinaryRunWriter
from rqa_jax.data.store import CorpusStore, ensure_corpus
from rqa_jax.errors import MissingIdError
from rqa_jax.eval.metrics import evaluate, evaluate_stream


def _corpus(tmp_path, n=300):
    tmp_path.mkdir(exist_ok=True)
    path = tmp_path / "corpus.tsv"
    pids = [f"p{(i * 7919) % 100003}" for i in range(n)]  # not in sorted order
    F.write_id_text(path, [F.TextRecord(p, f"text of {p}", None) for p in pids])
    store = CorpusStore(ensure_corpus(tmp_path / "cache", [path], lambda: ((p, None, f"text of {p}") for p in pids),
                                      progress=False))  # fmt: skip
    return path, pids, store


def _text_run(pids, n_queries=37, k=20, seed=0):
    rng = random.Random(seed)
    run = {}
    for q in range(n_queries):
        depth = k if q % 5 else rng.randint(1, k)  # some queries have fewer candidates
        picked = rng.sample(pids, depth)
        # float32 values, as a search writes them: they survive the 6-decimal text form
        scores = sorted(np.float32(rng.uniform(-30, 30)).item() for _ in picked)[::-1]
        run[f"q{q}"] = list(zip(picked, scores, strict=True))
    return run


def test_text_run_to_binary_and_back_is_the_same_run(tmp_path):
    _path, pids, store = _corpus(tmp_path)
    run = _text_run(pids)
    F.write_run(tmp_path / "r.trec", run)
    n = binrun.text_to_binary(tmp_path / "r.trec", tmp_path / "r.bin", store.rows_of, len(store),
                              store.fingerprint(), chunk_queries=8)  # fmt: skip
    assert n == len(run)
    b = BinaryRun(tmp_path / "r.bin")
    assert b.qids == list(run) and b.k == 20
    run = F.read_run(tmp_path / "r.trec")  # the text holds 6 decimals: those are the scores
    for i, (_qid, ranked) in enumerate(run.items()):
        rows, scores = b.row(i)
        assert store.pid_of_rows(rows) == [p for p, _ in ranked]  # ids and order
        np.testing.assert_array_equal(scores, np.float32([s for _, s in ranked]))
        assert (b.rows[i, len(ranked) :] == binrun.PAD).all()
    # back to text: the same lines (TREC and RocketQA forms)
    binrun.binary_to_text(tmp_path / "r.bin", tmp_path / "back.trec", store.pid_of_rows)
    assert (tmp_path / "back.trec").read_text() == (tmp_path / "r.trec").read_text()
    binrun.binary_to_text(tmp_path / "r.bin", tmp_path / "back.tsv", store.pid_of_rows, "rocketqa")
    assert F.read_run(tmp_path / "back.tsv") == F.read_run(tmp_path / "r.trec")

    # streamed readers of either form give the same groups (scores as float32)
    def f32(groups):
        return [(q, [(p, np.float32(s)) for p, s in r]) for q, r in groups]

    assert f32(binrun.iter_run(tmp_path / "r.bin", store.pid_of_rows)) == f32(
        binrun.iter_run(tmp_path / "r.trec")
    )
    top = binrun.read_run_top(tmp_path / "r.bin", 3, store.pid_of_rows)
    assert f32(top.items()) == f32((q, r[:3]) for q, r in run.items())


def test_writer_resumes_only_unwritten_chunks_and_any_process_split_covers_all(tmp_path):
    qids = [f"q{i}" for i in range(10)]
    w = BinaryRunWriter(tmp_path / "r", qids, 4, chunk_queries=3, corpus_size=100)
    assert w.n_chunks == 4 and w.pending() == [0, 1, 2, 3]
    assert w.pending(0, 2) == [0, 2] and w.pending(1, 2) == [1, 3]
    rows = np.arange(40).reshape(10, 4) % 100
    w.write_chunk(0, rows[0:3], rows[0:3] * 1.0)
    w.write_chunk(2, rows[6:9], rows[6:9] * 1.0)
    assert not w.finish() and not (tmp_path / "r" / binrun.DONE).exists()
    with pytest.raises(BinaryRunError, match=r"incomplete binary run \(2 of 4 chunks"):
        BinaryRun(tmp_path / "r")
    # a killed writer left garbage in a chunk it never marked: reopened, that chunk is
    # still pending and gets written whole
    w._rows[3:6] = 99
    again = BinaryRunWriter(tmp_path / "r", qids, 4, chunk_queries=3, corpus_size=100)
    assert again.pending() == [1, 3]
    for c in again.pending():
        span = again.chunk_rows(c)
        again.write_chunk(c, rows[span.start : span.stop], rows[span.start : span.stop] * 1.0)
    assert again.finish()
    b = BinaryRun(tmp_path / "r")
    np.testing.assert_array_equal(b.rows, rows)
    np.testing.assert_array_equal(b.scores, rows.astype(np.float32))
    with pytest.raises(BinaryRunError, match="other k"):  # never a silent overwrite
        BinaryRunWriter(tmp_path / "r", qids, 5, chunk_queries=3, corpus_size=100)


def test_bad_binary_runs_are_refused_naming_the_file_and_id(tmp_path):
    _path, pids, store = _corpus(tmp_path, 50)
    run = _text_run(pids, 6, 5)
    F.write_run(tmp_path / "r.trec", run)
    binrun.text_to_binary(
        tmp_path / "r.trec", tmp_path / "r.bin", store.rows_of, len(store), store.fingerprint()
    )
    # a row number outside the corpus
    b = np.load(tmp_path / "r.bin" / binrun.ROWS, mmap_mode="r+")
    b[2, 1] = 50
    b.flush()
    with pytest.raises(BinaryRunError, match="query 'q2' lists row 50, outside the corpus"):
        binrun.pid_reader(tmp_path / "r.bin", store)
    b[2, 1] = 3
    b.flush()
    # another corpus
    _, _, other = _corpus(tmp_path / "o", 51)
    with pytest.raises(BinaryRunError, match="searched a corpus of 50 passages"):
        binrun.pid_reader(tmp_path / "r.bin", other)
    # truncated arrays
    scores = tmp_path / "r.bin" / binrun.SCORES
    scores.write_bytes(scores.read_bytes()[:-7])
    with pytest.raises(BinaryRunError, match=r"scores\.npy: truncated"):
        BinaryRun(tmp_path / "r.bin")
    # a text run naming a passage that is not in the corpus
    F.write_run(tmp_path / "bad.trec", {"q0": [(pids[1], 2.0), ("nope", 1.0)]})
    with pytest.raises(MissingIdError, match=r"bad\.trec: query 'q0': passage id 'nope'"):
        binrun.text_to_binary(
            tmp_path / "bad.trec", tmp_path / "bad.bin", store.rows_of, len(store)
        )
    with pytest.raises(BinaryRunError, match="not a binary run"):
        BinaryRun(tmp_path)


def test_streamed_metrics_equal_whole_run_metrics_to_the_last_bit():
    rng = random.Random(3)
    pids = [f"p{i}" for i in range(400)]
    run = {f"q{q}": [(p, 1.0) for p in rng.sample(pids, 60)] for q in range(50)}
    qrels = {f"q{q}": {rng.choice(pids): 1, rng.choice(pids): 1} for q in range(0, 60, 2)}
    for q in list(qrels)[:10]:  # some hits high up
        qrels[q][run[q][rng.randint(0, 12)][0]] = 1
    metrics = ["mrr@10", "recall@50", "recall_frac@20", "ndcg@10"]
    assert evaluate_stream(qrels, iter(run.items()), metrics) == evaluate(qrels, run, metrics)


def test_cli_convert_and_evaluate_a_binary_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RQA_CACHE_DIR", str(tmp_path / "cache"))
    path, pids, _store = _corpus(tmp_path)
    run = _text_run(pids)
    F.write_run(tmp_path / "r.trec", run)
    qrels = {q: {r[3][0]: 1} for q, r in list(run.items())[::2] if len(r) > 3}
    F.write_qrels(tmp_path / "qrels.tsv", qrels)
    assert rqa(["convert", "run", "--input", str(tmp_path / "r.trec"), "--output", str(tmp_path / "r.bin"),
                "--corpus", str(path), "--no-progress"]) == 0  # fmt: skip
    assert rqa(["convert", "run", "--input", str(tmp_path / "r.bin"), "--output", str(tmp_path / "b.tsv"),
                "--corpus", str(path), "--format", "rocketqa", "--no-progress"]) == 0  # fmt: skip
    assert F.read_run(tmp_path / "b.tsv") == F.read_run(tmp_path / "r.trec")
    capsys.readouterr()
    for run_path in ("r.trec", "r.bin"):
        assert rqa(["evaluate", "--run", str(tmp_path / run_path), "--qrels", str(tmp_path / "qrels.tsv"),
                    "--corpus", str(path), "--metrics", "mrr@10,recall@5"]) == 0  # fmt: skip
    first, second = capsys.readouterr().out.split("}\n", 1)
    assert json.loads(first + "}") == json.loads(second) and json.loads(second)[
        "mrr@10"
    ] == pytest.approx(0.25)
    # without --corpus a binary run cannot be read: one clear line, exit 1
    assert (
        rqa(["evaluate", "--run", str(tmp_path / "r.bin"), "--qrels", str(tmp_path / "qrels.tsv")])
        == 1
    )
    assert "--corpus" in capsys.readouterr().err
