"""Re-ranker training data as RocketQA's construct_marco_train_ce.py builds it, on hand-made
runs: per query its positives and 4 distinct negatives from the run's top, never a positive."""

import collections

import pytest

from configs import common
from rqa_jax.data import formats as F
from rqa_jax.train import builders

# the hand-made run has anomalies on purpose; the first test checks each one is reported
pytestmark = pytest.mark.filterwarnings("ignore:.*(no positive|not in the run|fewer than)")

POSITIVES = {"q0": ["p0"], "q1": ["p1", "p2"], "q2": ["p3"], "q3": ["p4"]}


@pytest.fixture
def marco(tmp_path):
    d = tmp_path / "marco"
    d.mkdir()
    F.write_id_text(
        d / "collection.tsv", [F.TextRecord(f"p{i}", f"passage {i}") for i in range(40)]
    )
    F.write_id_text(d / "queries.train.tsv", [F.TextRecord(q, f"query {q}") for q in POSITIVES])
    F.write_qrels(d / "qrels.train.tsv", {q: dict.fromkeys(ps, 1) for q, ps in POSITIVES.items()})
    run = {
        "q0": [(f"p{i}", -i) for i in [0, *range(10, 20)]],  # positive at rank 1, 10 others
        "q1": [(f"p{i}", -i) for i in [20, 1, 21, 2, 22, 23, 24, 25, 26]],  # both positives inside
        "q2": [(f"p{i}", -i) for i in [30, 3, 31]],  # only 2 non-positives in the run
        "q9": [(f"p{i}", -i) for i in [5, 6]],  # a run query without qrels
    }  # q3 is not in the run
    F.write_run(tmp_path / "train.run", run)
    return tmp_path


def cross_config(marco, **kw):
    c = common.get_cross_config()
    c.data.source, c.data.dir = "marco", str(marco / "marco")
    c.data.train_run, c.data.negative_depth = str(marco / "train.run"), 8
    for k, v in kw.items():
        setattr(c, k, v)
    return c


def by_query(examples):
    groups = collections.defaultdict(lambda: {1: [], 0: []})
    for ex in examples:
        groups[ex["query"].split()[1]][ex["label"]].append(ex["para"].replace("passage ", "p"))
    return groups


def test_pointwise_positives_and_4_distinct_negatives_per_query_from_the_run_top(marco):
    config = cross_config(marco)
    assert config.data.cross_negatives_per_query == 4
    with pytest.warns(UserWarning) as caught:
        examples, _ = builders.cross_data(config, marco / "work")
    notes = " | ".join(str(w.message) for w in caught)
    assert (
        "1 run queries have no positive" in notes
        and "1 train queries with positives are not in the run" in notes
    )
    assert "1 lists of the top 8 have fewer than 4" in notes
    got = by_query(examples)
    assert set(got) == set(POSITIVES)
    for qid, labels in got.items():
        assert sorted(labels[1]) == sorted(POSITIVES[qid])  # every positive, label 1, once
        assert len(set(labels[0])) == len(labels[0])  # distinct negatives
        assert not set(labels[0]) & set(POSITIVES[qid])
    assert len(got["q0"][0]) == len(got["q1"][0]) == 4  # per query, not per positive
    # from the top negative_depth (8) only: q0's ranks 2-8 are p10..p16
    assert set(got["q0"][0]) <= {f"p{i}" for i in range(10, 17)}
    assert set(got["q1"][0]) <= {"p20", "p21", "p22", "p23", "p24", "p25"}
    assert sorted(got["q2"][0]) == ["p30", "p31"]  # all there is
    assert got["q3"][0] == []  # not in the run: its positive only, as RocketQA
    # seeded: the same seed draws the same negatives, another seed others
    again = by_query(builders.cross_data(cross_config(marco), marco / "work2")[0])
    assert again == got
    config.seed = 7
    other = by_query(builders.cross_data(config, marco / "work3")[0])
    assert [other[q][0] for q in ("q0", "q1")] != [got[q][0] for q in ("q0", "q1")]


def test_without_a_run_negatives_are_random_corpus_passages(marco, capsys):
    config = cross_config(marco)
    config.data.train_run = ""
    examples, _ = builders.cross_data(config, marco / "work")
    assert "no data.train_run" in capsys.readouterr().out
    got = by_query(examples)
    for qid, labels in got.items():
        assert len(labels[0]) == 4 and len(set(labels[0])) == 4
        assert not set(labels[0]) & set(POSITIVES[qid])


def test_listwise_lists_have_the_positive_first_and_distinct_negatives(marco):
    config = cross_config(marco, objective="listwise", list_size=5)
    with pytest.warns(UserWarning, match="topped up at random"):
        lists, _ = builders.cross_data(config, marco / "work")
    assert len(lists) == 5  # one per (query, positive): q1 has two
    for ex in lists:
        qid = ex["query"].split()[1]
        pids = [p.replace("passage ", "p") for p in ex["paras"]]
        assert ex["labels"] == [1, 0, 0, 0, 0] and pids[0] in POSITIVES[qid]
        assert len(set(pids)) == 5 and not set(pids[1:]) & set(POSITIVES[qid])
        if qid == "q0":
            assert set(pids[1:]) <= {f"p{i}" for i in range(10, 17)}
