"""README's "Train on your own data", followed as a user would, on files written here: MS
MARCO-form files (queries, passages with their titles in titles.tsv, qrels) → ``rqa train``
→ ``rqa encode`` the passages with their titles → ``rqa index`` → ``rqa search`` the dev
queries → ``rqa evaluate``; and the RocketQA-TSV route (``query, pos title, pos para, neg
title, neg para, 0``). Every command goes through ``rqa``'s ``main`` in this process."""

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from rqa_jax.cli import main as rqa
from rqa_jax.data import formats as F

pytestmark = pytest.mark.slow

THINGS = ["lighthouse", "violin", "glacier", "volcano", "tortoise", "cathedral", "harbor", "meadow",
          "falcon", "orchard", "canyon", "windmill", "lantern", "compass", "saddle", "telescope",
          "anchor", "beehive", "castle", "desert", "forest", "island", "jungle", "kettle", "ladder",
          "mirror", "needle", "oasis", "pyramid", "quarry", "river", "statue", "temple", "tunnel",
          "valley", "wagon", "yacht", "zeppelin", "bridge", "canal", "fountain", "garden", "helmet",
          "igloo", "jetty", "kiosk", "lagoon", "market", "museum", "palace"]  # fmt: skip
FACTS = ["is painted bright red", "was built two centuries ago", "is guarded by an old keeper",
         "stands near the northern border", "is visited by many tourists each summer"]  # fmt: skip


def write_own_data(d):
    """50 topics, a passage per (topic, fact) with the topic as its title: 40 train queries,
    10 dev queries, qrels in MS MARCO form (``qid 0 pid 1``). Returns the six-column
    RocketQA TSV of the same train queries (positive and one negative passage each)."""
    d.mkdir()
    passages, titles, rng = {}, {}, np.random.default_rng(0)
    for i, thing in enumerate(THINGS):
        for j, fact in enumerate(FACTS):
            pid = str(1000 + 10 * i + j)
            passages[pid], titles[pid] = f"The {thing} {fact}, people say.", thing.title()
    queries, qrels = {}, {}
    for i, thing in enumerate(THINGS):
        j = int(rng.integers(len(FACTS)))
        qid = str(500 + i)
        queries[qid] = f"which {thing} {FACTS[j].split(' ', 1)[1]}"
        qrels[qid] = {str(1000 + 10 * i + j): 1}
    train, dev = list(queries)[:40], list(queries)[40:]
    F.write_id_text(d / "collection.tsv", [F.TextRecord(p, t) for p, t in passages.items()])
    F.write_titles(d / "titles.tsv", titles)
    for split, qids in (("train", train), ("dev", dev)):
        F.write_id_text(d / f"queries.{split}.tsv", [F.TextRecord(q, queries[q]) for q in qids])
        F.write_qrels(d / f"qrels.{split}.tsv", {q: qrels[q] for q in qids})
    rows = []
    for q in train:  # the negative: the same fact about the next topic
        pos = next(iter(qrels[q]))
        neg = str(1000 + (int(pos) - 1000 + 10) % 500)
        rows.append(
            F.DualTrainRow(queries[q], titles[pos], passages[pos], titles[neg], passages[neg])
        )
    return rows


def test_train_on_your_own_data(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the commands below, run in the user's directory
    rows = write_own_data(tmp_path / "mydata")
    config = str(Path(__file__).resolve().parent.parent / "configs" / "rocketqa_v1_marco.py")

    # 1. train RocketQA step 1 (here its tiny runlocal variant) on the MS MARCO-form dir
    assert rqa(["train", "--config", f"{config}:runlocal", "--workdir", "work",
                "--config.data.source=marco", "--config.data.dir=mydata"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "completed at step 20" in out and "dev_mrr@10" in out
    assert (tmp_path / "work" / "export" / "query_encoder").is_dir()

    # 2. the corpus with its titles, 'pid<TAB>text<TAB>title' (titles.tsv in collection order)
    subprocess.run(["sh", "-c", "cut -f2 mydata/titles.tsv | paste mydata/collection.tsv - > corpus.tsv"],
                   check=True)  # fmt: skip
    first = (tmp_path / "corpus.tsv").read_text().splitlines()[0].split("\t")
    assert first == ["1000", "The lighthouse is painted bright red, people say.", "Lighthouse"]
    assert rqa(["encode", "--model", "work/export", "--kind", "passage", "--input", "corpus.tsv",
                "--output", "work/corpus"]) == 0  # fmt: skip
    assert np.load(tmp_path / "work" / "corpus" / "embeddings.npy").shape[0] == 250

    # 3. index, search the dev queries, evaluate
    assert rqa(["index", "--embeddings", "work/corpus", "--output", "work/index"]) == 0
    assert rqa(["search", "--model", "work/export", "--index", "work/index", "--queries",
                "mydata/queries.dev.tsv", "--top-k", "100", "--output", "work/dev.run"]) == 0  # fmt: skip
    assert len(F.read_run(tmp_path / "work" / "dev.run")) == 10
    capsys.readouterr()
    assert rqa(["evaluate", "--run", "work/dev.run", "--qrels", "mydata/qrels.dev.tsv"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert set(metrics) == {"mrr@10", "recall@50", "recall@1000", "ndcg@10"}
    assert all(0.0 <= v <= 1.0 for v in metrics.values())

    # the RocketQA-TSV route: 6 columns, and data.dir only for the dev evaluation
    F.write_dual_train(tmp_path / "train.tsv", rows)
    assert rqa(["train", "--config", f"{config}:runlocal", "--workdir", "work_tsv",
                "--config.data.source=rocketqa_tsv", "--config.data.path=train.tsv",
                "--config.data.dir=mydata"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "completed at step 20" in out and "dev_mrr@10" in out
    assert (tmp_path / "work_tsv" / "export" / "passage_encoder").is_dir()
