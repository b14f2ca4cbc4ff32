"""Cross-encoder training through the shared loop: data with retriever negatives, dev
re-ranking MRR, and an export that scores as the trained parameters do."""

import json

import numpy as np

from configs import demo_cross
from rqa_jax.api import load_cross_encoder
from rqa_jax.data import formats
from rqa_jax.data.sample import generate
from rqa_jax.train import builders
from rqa_jax.train.loop import train


def small_sample(tmp_path):
    paths = generate(tmp_path / "data", entities_per_type=6, train_queries=40, dev_queries=10)
    corpus = [r.id for r in formats.iter_collection(paths["collection"])]
    rng = np.random.default_rng(0)

    def run_for(qrels_path, queries_path):
        qrels = formats.read_qrels(qrels_path)
        run = {}
        for q in formats.iter_queries(queries_path):
            cands = list(qrels[q.id]) + [
                p for p in rng.choice(corpus, 9, replace=False) if p not in qrels[q.id]
            ]
            run[q.id] = [(p, float(-i)) for i, p in enumerate(rng.permutation(cands))]
        return run

    formats.write_run(tmp_path / "train.run", run_for(paths["qrels.train"], paths["queries.train"]))
    formats.write_run(tmp_path / "dev.run", run_for(paths["qrels.dev"], paths["queries.dev"]))
    return paths


def test_pointwise_and_listwise_examples_take_negatives_from_the_run(tmp_path):
    paths = small_sample(tmp_path)
    config = demo_cross.get_config("runlocal")
    config.data.source, config.data.dir = "marco", str(tmp_path / "data")
    config.data.train_run = str(tmp_path / "train.run")
    config.data.cross_negatives_per_query = 4  # the recipe's (the demo takes 1)
    run = formats.read_run(tmp_path / "train.run")
    qrels = formats.read_qrels(paths["qrels.train"])
    texts = {r.text: r.id for r in formats.iter_collection(paths["collection"])}
    queries = {q.text: q.id for q in formats.iter_queries(paths["queries.train"])}
    examples, _ = builders.cross_data(config, tmp_path)
    # construct_marco_train_ce.py: each query's positive and 4 negatives from the run
    k = config.data.cross_negatives_per_query
    assert len(examples) == (1 + k) * 40 and sum(e["label"] for e in examples) == 40
    for e in examples:
        qid, pid = queries[e["query"]], texts[e["para"]]
        assert (pid in qrels[qid]) == (e["label"] == 1)
        assert e["label"] == 1 or pid in {p for p, _ in run[qid][: config.data.negative_depth]}
    config.objective, config.list_size = "listwise", 4
    lists, _ = builders.cross_data(config, tmp_path)
    assert len(lists) == 40 and all(
        len(x["paras"]) == 4 and x["labels"] == [1, 0, 0, 0] for x in lists
    )


def test_cross_training_evaluates_and_exports(tmp_path):
    small_sample(tmp_path)
    config = demo_cross.get_config("runlocal")
    config.data.source, config.data.dir = "marco", str(tmp_path / "data")
    config.data.train_run, config.data.dev_run = (
        str(tmp_path / "train.run"),
        str(tmp_path / "dev.run"),
    )
    result = train(config, tmp_path / "work")
    assert result["status"] == "completed" and result["step"] == 4
    lines = [json.loads(x) for x in (tmp_path / "work" / "metrics.jsonl").read_text().splitlines()]
    assert {"dev_rerank_mrr@10", "dev_run_mrr@10"} <= set(lines[0]) and lines[0]["step"] == 0
    assert "probe_loss" in lines[1]  # FGM is on, as RocketQA trains it
    exported = load_cross_encoder(result["metrics"]["export"])
    from rqa_jax.api import CrossEncoder

    trained = CrossEncoder(
        exported.config, "v1", result["state"].params, exported.tokenizer, config.cross_max_len
    )
    q, p = (
        ["Who fronts the band?", "Where is it?"],
        ["The lead vocalist is Ada.", "It is in Thule."],
    )
    np.testing.assert_allclose(exported.matching(q, p), trained.matching(q, p), atol=1e-5)
