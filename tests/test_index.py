"""Indexes over real MiniLM embeddings of the sample corpus, and the CLI chain
encode -> index -> search -> evaluate with its refusals."""

import json

import numpy as np
import pytest

from rqa_jax.cli import main as rqa
from rqa_jax.data import formats
from rqa_jax.data.sample import generate
from rqa_jax.index.search import Index, IndexMismatchError


@pytest.fixture(scope="module")
def encoded(minilm_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("idx")
    paths = generate(root / "data", entities_per_type=40, train_queries=20, dev_queries=60)
    for kind, src, name in (
        ("passage", paths["collection"], "corpus"),
        ("query", paths["queries.dev"], "queries"),
    ):
        argv = ["encode", "--model", str(minilm_dir), "--kind", kind, "--input", str(src)]
        assert rqa([*argv, "--output", str(root / name), "--no-progress"]) == 0
    return root, paths


def overlap(a, b, k):
    return np.mean(
        [len({p for p, _ in x[:k]} & {p for p, _ in y[:k]}) / k for x, y in zip(a, b, strict=True)]
    )


def test_scann_recall_against_exact_and_save_load(encoded, tmp_path):
    root, _ = encoded
    q = np.load(root / "queries" / "embeddings.npy")
    exact = Index.build(root / "corpus", "exact")
    scann = Index.build(root / "corpus", "scann")
    assert scann.meta["params"]["num_leaves"] == round(np.sqrt(800))
    assert overlap(exact.search(q, 10), scann.search(q, 10), 10) >= 0.95
    scann.save(tmp_path / "s")
    (tmp_path / "s").rename(tmp_path / "moved")  # an index dir can be moved
    again = Index.load(tmp_path / "moved")
    assert again.search(q, 10) == scann.search(q, 10)
    exact.save(tmp_path / "e")
    assert Index.load(tmp_path / "e").search(q, 10) == exact.search(q, 10)


def test_exact_search_is_exact_and_blocked(encoded):
    root, _ = encoded
    emb = np.load(root / "corpus" / "embeddings.npy")
    q = np.load(root / "queries" / "embeddings.npy")[:5]
    index = Index.build(root / "corpus", "exact")
    index.backend_index.block_rows = 97  # many blocks, merged
    got = index.search(q, 7)
    want = np.argsort(-(q @ emb.T), axis=1)[:, :7]
    assert [[index.ids.index(p) for p, _ in row] for row in got] == want.tolist()
    assert len(index.search(q, 10_000)[0]) == len(index.ids)  # k > corpus: the whole corpus


def test_cli_chain_and_refusals(encoded, minilm_dir, tmp_path, capsys):
    root, paths = encoded
    assert (
        rqa(["index", "--embeddings", str(root / "corpus"), "--output", str(tmp_path / "idx")]) == 0
    )
    run_file = tmp_path / "dev.run"
    argv = [
        "search",
        "--model",
        str(minilm_dir),
        "--index",
        str(tmp_path / "idx"),
        "--queries",
        str(paths["queries.dev"]),
    ]
    assert (
        rqa(
            [
                *argv,
                "--top-k",
                "20",
                "--output",
                str(run_file),
                "--corpus",
                str(paths["collection"]),
            ]
        )
        == 0
    )
    assert len(formats.read_run(run_file)) == 60
    capsys.readouterr()
    assert (
        rqa(
            [
                "evaluate",
                "--qrels",
                str(paths["qrels.dev"]),
                "--run",
                str(run_file),
                "--metrics",
                "mrr@10,recall@20",
            ]
        )
        == 0
    )
    scores = json.loads(capsys.readouterr().out)
    assert 0.5 < scores["mrr@10"] <= 1.0 and scores["recall@20"] >= scores["mrr@10"]
    # a corpus other than the index's is refused
    other = tmp_path / "other.tsv"
    other.write_text("x1\tsome passage\n")
    assert rqa([*argv, "--output", str(tmp_path / "r2"), "--corpus", str(other)]) != 0
    assert "another corpus" in capsys.readouterr().err
    # an empty query file, and a duplicated query id
    empty = tmp_path / "empty.tsv"
    empty.write_text("")
    assert rqa([*argv[:-1], str(empty), "--output", str(tmp_path / "r3")]) != 0
    assert "no queries" in capsys.readouterr().err
    dup = tmp_path / "dup.tsv"
    dup.write_text("q1\ta\nq1\tb\n")
    assert rqa([*argv[:-1], str(dup), "--output", str(tmp_path / "r4")]) != 0
    assert "duplicate qid 'q1'" in capsys.readouterr().err


def test_mismatched_index_is_refused(encoded, tmp_path):
    root, _ = encoded
    Index.build(root / "corpus", "exact").save(tmp_path / "idx")
    with pytest.raises(IndexMismatchError, match="dimension 384, the model gives 768"):
        Index.load(tmp_path / "idx", dim=768)
    with pytest.raises(IndexMismatchError, match="another model"):
        Index.load(tmp_path / "idx", model_fingerprint="0" * 64)
    bad = tmp_path / "bad"
    bad.mkdir()
    np.save(bad / "embeddings.npy", np.zeros((3, 4), np.float32))
    (bad / "ids.txt").write_text("a\nb\n")
    with pytest.raises(ValueError, match=r"3 rows but ids\.txt has 2 ids"):
        Index.build(bad, "exact")


def _clustered(n: int, dim: int, seed: int) -> np.ndarray:
    """Unit vectors around random centres, the shape of real passage embeddings."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(1, n // 100), dim)).astype(np.float32)
    x = centres[rng.integers(0, len(centres), n)] + 0.6 * rng.standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize(("n", "leaves_searched"), [(6000, "all"), (40_000, "some")])
def test_scann_top_1000_is_k_distinct_exactly_scored_rows(n, leaves_searched):
    """The review's bug: k = 1000 gave 100 real rows and 900 rows of id 0 with NaN scores."""
    from rqa_jax.index.search import ExactIndex, ScannIndex, default_scann_params

    x = _clustered(n + 40, 32, seed=1)
    db, q = x[:n], x[n:]
    params = default_scann_params(n)
    assert (params["num_leaves_to_search"] < params["num_leaves"]) == (leaves_searched == "some")
    scores, rows = ScannIndex.build(db, params).search(q, 1000)
    assert scores.shape == rows.shape == (len(q), 1000)
    assert all(len(set(r)) == 1000 for r in rows.tolist())
    assert np.isfinite(scores).all() and (np.diff(scores, axis=1) <= 0).all()
    np.testing.assert_allclose(scores, np.take_along_axis(q @ db.T, rows, 1), atol=1e-5)
    _, truth = ExactIndex(db).search(q, 1000)
    recall = np.mean([len(set(a) & set(b)) / 1000 for a, b in zip(rows, truth, strict=True)])
    assert recall >= 0.99, recall


def test_scann_query_short_of_candidates_is_searched_again_over_all_leaves(monkeypatch):
    from rqa_jax.index.search import ScannIndex, default_scann_params

    x = _clustered(20_040, 16, seed=2)
    index = ScannIndex.build(x[:20_000], default_scann_params(20_000))
    monkeypatch.setattr(index, "_leaves_for", lambda k: 1)  # one leaf holds < 1000 points
    scores, rows = index.search(x[20_000:], 1000)
    assert all(len(set(r)) == 1000 for r in rows.tolist()) and np.isfinite(scores).all()
    assert len(index.search(x[:3], 20_000)[1][0]) == 20_000  # k = N: the whole corpus, ranked
