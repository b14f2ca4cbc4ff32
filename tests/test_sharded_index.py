"""A sharded index (one index per block of corpus rows, searched in turn, top-k merged)
returns what one index over the whole corpus returns, for exact and ScaNN shards; `rqa
index --shard-rows` builds it, resumes a cut-off build, and loading refuses another model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rqa_jax.cli import main as rqa
from rqa_jax.index.search import ExactIndex, Index, IndexMismatchError
from rqa_jax.index.sharded import ShardedIndex, build_sharded, load_index


@pytest.fixture()
def embeddings(tmp_path):
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(1000, 16)).astype(np.float32)
    d = tmp_path / "emb"
    d.mkdir()
    np.save(d / "embeddings.npy", emb)
    (d / "ids.txt").write_text("".join(f"p{i * 37 % 1009}\n" for i in range(1000)))
    (d / "meta.json").write_text(json.dumps({"kind": "passage", "model_fingerprint": "m" * 8}))
    return d, emb, rng.normal(size=(40, 16)).astype(np.float32)


@pytest.mark.parametrize("backend", ["exact", "scann"])
def test_sharded_search_equals_one_index(tmp_path, embeddings, backend):
    d, emb, queries = embeddings
    want_s, want_r = ExactIndex(emb).search(queries, 100)
    build_sharded(d, tmp_path / "idx", 300, backend, progress=False)  # 300, 300, 300, 100 rows
    for in_memory in (True, False):
        got_s, got_r = ShardedIndex(tmp_path / "idx", in_memory).search(queries, 100)
        np.testing.assert_array_equal(got_r, want_r)
        np.testing.assert_allclose(got_s, want_s, rtol=1e-6)
    whole = Index.build(d, "exact")  # the reference (ScaNN over all 1000 is approximate at k=7)
    sharded = load_index(tmp_path / "idx")
    assert sharded.search_ids(queries, 100) == [[(p, pytest.approx(s, rel=1e-6)) for p, s in hits]
                                              for hits in whole.search(queries, 100)]  # fmt: skip
    assert sharded.meta["corpus_fingerprint"] == whole.meta["corpus_fingerprint"]


def test_rqa_index_shard_rows_resumes_and_checks_the_model(tmp_path, embeddings):
    d, emb, queries = embeddings
    out = tmp_path / "idx"
    index_argv = [
        "index",
        "--embeddings",
        str(d),
        "--output",
        str(out),
        "--backend",
        "exact",
        "--shard-rows",
        "256",
    ]
    assert rqa(index_argv) == 0
    meta = json.loads((out / "shards.json").read_text())
    assert [s["rows"] for s in meta["shards"]] == [256, 256, 256, 232] and meta["count"] == 1000
    # a build cut off after two shards: the finished ones are kept, the rest built
    (out / "shards.json").unlink()
    kept = (out / "shard-00001" / "index.json").stat().st_mtime_ns
    (out / "shard-00002" / "index.json").unlink()
    assert rqa(index_argv) == 0
    assert (out / "shard-00001" / "index.json").stat().st_mtime_ns == kept
    np.testing.assert_array_equal(
        ShardedIndex(out).search(queries, 50)[1], ExactIndex(emb).search(queries, 50)[1]
    )
    with pytest.raises(IndexMismatchError, match="another model"):
        load_index(out, model_fingerprint="x" * 8)
    with pytest.raises(IndexMismatchError, match="dimension 16"):
        load_index(out, dim=32)
