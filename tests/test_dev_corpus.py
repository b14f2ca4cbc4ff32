"""Dev evaluation at scale: the passages searched are the candidate set the config names
(full, a fixed random sample, or a run's top K, always with the judged passages), and the
metric names say which."""

import jax
import jax.numpy as jnp
import pytest
from conftest import tiny_config

from configs import common
from rqa_jax.data import formats as F
from rqa_jax.models.towers import DualEncoderNet
from rqa_jax.train import builders
from rqa_jax.train.dev_eval import DevEvaluator

JUDGED = {"d0": {"p3": 1}, "d1": {"p50": 1, "p51": 0}, "d2": {"p120": 1}}


@pytest.fixture(scope="module")
def marco(tmp_path_factory):
    d = tmp_path_factory.mktemp("marco")
    F.write_id_text(
        d / "collection.tsv", [F.TextRecord(f"p{i}", f"the dog {i}") for i in range(200)]
    )
    F.write_titles(d / "titles.tsv", {f"p{i}": f"title {i}" for i in range(200)})
    F.write_id_text(
        d / "queries.dev.tsv", [F.TextRecord(q, f"what is {q}") for q in [*JUDGED, "d3"]]
    )
    F.write_qrels(d / "qrels.dev.tsv", JUDGED)
    run = {
        q: [(f"p{10 * j + i}", -i) for i in range(6)] for j, q in enumerate([*JUDGED, "d3", "x"])
    }
    F.write_run(d / "dev.run", run)
    return d


def dev_set(marco, **data):
    c = common.get_dual_config()
    for k, v in data.items():
        setattr(c.data, k, v)
    return builders.marco_dev_set(marco, c.data)


def judged(dev):
    return {p for docs in dev.qrels.values() for p in docs}


def test_full_corpus_when_small_and_guidance_when_large(marco):
    dev = dev_set(marco)
    assert (
        len(dev.corpus) == 200 and dev.name == "" and dev.corpus["p7"] == ("title 7", "the dog 7")
    )
    with pytest.raises(ValueError, match=r"200 passages.*dev_corpus='sample:200000'.*'run:1000'"):
        dev_set(marco, dev_full_limit=100)


def test_sample_is_judged_plus_a_fixed_random_draw_of_n_in_all(marco):
    dev = dev_set(marco, dev_corpus="sample:50")
    assert dev.name == "sample50" and len(dev.corpus) == 50 and judged(dev) <= set(dev.corpus)
    assert set(dev_set(marco, dev_corpus="sample:50").corpus) == set(dev.corpus)  # fixed
    assert set(dev_set(marco, dev_corpus="sample:50:1").corpus) != set(dev.corpus)
    assert dev.corpus["p120"] == ("title 120", "the dog 120")
    assert dev_set(marco, dev_corpus="sample:500").name == ""  # the whole corpus after all
    with pytest.raises(ValueError, match="judge 4 passages"):
        dev_set(marco, dev_corpus="sample:3")
    # dev_max_queries first, then the judged passages of those queries
    small = dev_set(marco, dev_corpus="sample:10", dev_max_queries=1)
    assert list(small.queries) == ["d0"] and judged(small) == {"p3"} and len(small.corpus) == 10


def test_run_is_judged_plus_the_runs_top_k_of_the_dev_queries(marco):
    dev = dev_set(marco, dev_corpus="run:3", dev_candidates_run=str(marco / "dev.run"))
    top3 = {f"p{10 * j + i}" for j in range(4) for i in range(3)}  # not query x's: not a dev query
    assert dev.name == "run3" and set(dev.corpus) == top3 | judged(dev)
    with pytest.raises(FileNotFoundError, match="dev_candidates_run"):
        dev_set(marco, dev_corpus="run:3")
    for bad in ("sample", "sample:x", "run:0", "top:5"):
        with pytest.raises(ValueError, match="must be 'full'"):
            dev_set(marco, dev_corpus=bad)


def test_metric_names_carry_the_candidate_set(marco, tiny_tokenizer):
    dev = dev_set(marco, dev_corpus="sample:20")
    net = DualEncoderNet(tiny_config(), tie_towers=True, pooling="cls")
    ids = jnp.ones((1, 8), jnp.int32)
    params = net.init(jax.random.PRNGKey(0), {"input_ids": ids, "attention_mask": ids},
                      {"input_ids": ids, "attention_mask": ids})["params"]  # fmt: skip
    evaluator = DevEvaluator(dev, net, tiny_tokenizer, 8, 16, batch_size=32)
    assert len(evaluator.pids) == 20
    metrics = evaluator(params)
    assert set(metrics) == {"dev_mrr@10[sample20]", "dev_recall@1[sample20]",
                            "dev_recall@10[sample20]", "dev_recall@100[sample20]"}  # fmt: skip
    # 20 candidates: every judged one is in the top 100
    assert metrics["dev_recall@100[sample20]"] == 1.0
