"""TFDS builders build array_record files from small raw files and read back the same
records, with no TensorFlow installed."""

import importlib.util
import json

import pytest

from rqa_jax.data import examples as E
from rqa_jax.data import formats as F
from rqa_jax.data import tfds_builders as T
from rqa_jax.data.sample import generate


def canon(records):
    return sorted(json.dumps(r, sort_keys=True) for r in records)


def read_all(builder, split):
    src = T.data_source(builder, split)
    return [src[i] for i in range(len(src))]


def test_no_tensorflow_installed():
    assert importlib.util.find_spec("tensorflow") is None


@pytest.fixture(scope="module")
def marco_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("marco")
    generate(d, entities_per_type=6, train_queries=30, dev_queries=10, seed=1)
    return d


def test_msmarco_passage_from_qrels(marco_dir, tmp_path):
    b = T.build("msmarco_passage", marco_dir, tmp_path / "data")
    titles = F.read_titles(marco_dir / "titles.tsv")
    corpus = [
        E.passage(r.id, titles[r.id], r.text)
        for r in F.iter_collection(marco_dir / "collection.tsv")
    ]
    assert canon(read_all(b, "corpus")) == canon(corpus)
    expected = E.dual_from_marco(
        marco_dir / "collection.tsv", marco_dir / "queries.train.tsv", marco_dir / "qrels.train.tsv",
        marco_dir / "titles.tsv", num_negatives=4, seed=0,
    )  # fmt: skip
    assert canon(read_all(b, "train")) == canon(expected)
    queries = [{"id": q.id, "text": q.text} for q in F.iter_queries(marco_dir / "queries.dev.tsv")]
    assert canon(read_all(b, "dev_queries")) == canon(queries)
    qrels = [
        {"qid": q, "pid": p, "relevance": r}
        for _, q, p, r in F.iter_qrels(marco_dir / "qrels.dev.tsv")
    ]
    assert canon(read_all(b, "dev_qrels")) == canon(qrels)
    # an independent build of the same files gives the same records in the same order
    again = T.build("msmarco_passage", marco_dir, tmp_path / "data2")
    assert read_all(again, "train") == read_all(b, "train")


def test_msmarco_passage_from_triples(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    F.write_id_text(
        manual / "collection.tsv", [F.TextRecord("1", "a passage"), F.TextRecord("2", "b")]
    )
    triples = [F.Triple(f"q{i}", f"pos {i}", f"neg {i}") for i in range(5)]
    F.write_triples(manual / "triples.train.tsv", triples)
    b = T.build("msmarco_passage", manual, tmp_path / "data")
    assert canon(read_all(b, "train")) == canon(E.dual_from_triples(manual / "triples.train.tsv"))
    with pytest.raises(KeyError, match="no split 'dev_queries'"):
        T.data_source(b, "dev_queries")


def test_nq_dpr(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    F.write_dpr_passages(
        manual / "psgs_w100.tsv", [F.TextRecord("1", "Aaron text", "Aaron"), F.TextRecord("2", "x")]
    )
    ctx = F.Context
    examples = [
        F.DprExample(
            "who was aaron",
            ("prophet",),
            (ctx("Aaron", "Aaron text", "1"),),
            (ctx(None, "x", "2"),),
            (ctx("Moses", "Moses text", "3"),),
        ),
        F.DprExample("no positive here", ("a",), ()),
    ]
    F.write_dpr_examples(manual / "nq-train.json", examples)
    F.write_dpr_examples(manual / "nq-dev.json", examples[:1])
    F.write_qa_pairs(manual / "nq-test.qa.csv", [F.QaPair("who is it", ("Bob", "Robert"))])
    b = T.build("nq_dpr", manual, tmp_path / "data")
    assert canon(read_all(b, "train")) == canon(E.dpr_examples(manual / "nq-train.json"))
    assert canon(read_all(b, "dev")) == canon(E.dpr_examples(manual / "nq-dev.json"))
    assert [(r["question"], r["answers"]) for r in read_all(b, "test")] == [
        ("who is it", ["Bob", "Robert"])
    ]
    assert canon(read_all(b, "corpus")) == canon(
        [E.passage("1", "Aaron", "Aaron text"), E.passage("2", None, "x")]
    )
    duals = [E.dual_from_dpr_example(r) for r in read_all(b, "train") if r["positives"]]
    assert duals == list(E.dual_from_dpr(manual / "nq-train.json"))


@pytest.mark.parametrize("config", ["dual", "cross", "joint8"])
def test_rocketqa_tsv(tmp_path, config):
    manual = tmp_path / "manual"
    manual.mkdir()
    path = manual / "train.tsv"
    if config == "dual":
        F.write_dual_train(
            path, [F.DualTrainRow(f"q{i}", "t", f"p{i}", None, f"n{i}") for i in range(6)]
        )
        expected = E.dual_from_rocketqa_tsv(path)
    elif config == "cross":
        F.write_cross_train(
            path, [F.CrossTrainRow(f"q{i}", None, f"p{i}", i % 2) for i in range(6)]
        )
        expected = E.cross_from_tsv(path)
    else:
        lists = [
            F.JointList(f"q{i}", ("t",) * 8, tuple(f"p{i}-{j}" for j in range(8)), (1,) + (0,) * 7)
            for i in range(3)
        ]
        F.write_joint_lists(path, lists)
        expected = E.joint_from_tsv(path, 8)
    b = T.build("rocketqa_tsv", manual, tmp_path / "data", config=config)
    assert canon(read_all(b, "train")) == canon(expected)


def test_bad_file_fails_the_build_naming_the_line(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    (manual / "train.tsv").write_text("q\tt\tp\t1\nq\tt\tp\n")
    with pytest.raises(F.FormatError, match=r"train.tsv:2: expected 4"):
        T.build("rocketqa_tsv", manual, tmp_path / "data", config="cross")
