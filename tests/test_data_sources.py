"""Where training data comes from: settings a data.source would ignore are refused (no silent
fallbacks), and MS MARCO dirs are read under every naming they come with (this library's,
the official downloads', RocketQA's own package): the same examples and dev set come out."""

import pytest

from configs import common
from rqa_jax.data import formats as F
from rqa_jax.pipelines.rocketqa_v1 import Dataset
from rqa_jax.train import builders

PASSAGES = {f"p{i}": (f"title {i}" if i % 3 else None, f"passage number {i} about dogs") for i in range(30)}  # fmt: skip
TRAIN = {f"t{i}": f"train question {i}" for i in range(8)}
TRAIN_QRELS = {f"t{i}": {f"p{i}": 1} for i in range(8)}
DEV = {f"d{i}": f"dev question {i}" for i in range(5)}
DEV_QRELS = {f"d{i}": {f"p{10 + i}": 1} for i in range(4)}  # d4 is not judged
TRIPLES = [F.Triple(f"train question {i}", f"passage number {i}", f"passage number {i + 9}") for i in range(8)]  # fmt: skip


def _qrels_2col(path, qrels):
    path.write_text("".join(f"{q}\t{p}\n" for q, docs in qrels.items() for p in docs))


def write_marco(root, scheme: str, titles: bool = True):
    """The same data under one naming: "ours" (the sample's), "official" (MS MARCO's
    downloads: the small dev set, triples.train.small.tsv, no titles) or "rocketqa"
    (RocketQA's corpus/marco/: para.txt, para.title.txt, *.query.txt, two-column qrels)."""
    root.mkdir(parents=True)
    names = {
        "ours": ("collection.tsv", "titles.tsv", "queries.train.tsv", "queries.dev.tsv",
                 "qrels.train.tsv", "qrels.dev.tsv", "triples.train.tsv"),
        "official": ("collection.tsv", None, "queries.train.tsv", "queries.dev.small.tsv",
                     "qrels.train.tsv", "qrels.dev.small.tsv", "triples.train.small.tsv"),
        "rocketqa": ("para.txt", "para.title.txt", "train.query.txt", "dev.query.txt",
                     "qrels.train.tsv", "qrels.dev.tsv", None),
    }[scheme]  # fmt: skip
    collection, title_file, q_train, q_dev, r_train, r_dev, triples = names
    F.write_id_text(root / collection, [F.TextRecord(p, t) for p, (_, t) in PASSAGES.items()])
    if titles and title_file:
        F.write_titles(root / title_file, {p: title for p, (title, _) in PASSAGES.items()})
    F.write_id_text(root / q_train, [F.TextRecord(q, t) for q, t in TRAIN.items()])
    F.write_id_text(root / q_dev, [F.TextRecord(q, t) for q, t in DEV.items()])
    if scheme == "rocketqa":
        _qrels_2col(root / r_train, TRAIN_QRELS)
        _qrels_2col(root / r_dev, DEV_QRELS)
    else:
        F.write_qrels(root / r_train, TRAIN_QRELS)
        F.write_qrels(root / r_dev, DEV_QRELS)
    if triples:
        F.write_triples(root / triples, TRIPLES)
    return root


def dual(root, **data):
    c = common.get_dual_config()
    c.data.source, c.data.dir, c.eval_every = "marco", str(root), 1
    for k, v in data.items():
        c.data[k] = v
    return c


def cross(root, **data):
    c = common.get_cross_config()
    c.data.source, c.data.dir = "marco", str(root)
    for k, v in data.items():
        c.data[k] = v
    return c


def everything(source):
    return [source[i] for i in range(len(source))]


def read_dir(root, work):
    """What training and evaluation read from an MS MARCO dir."""
    examples, dev = builders.dual_data(dual(root), work / "dual")
    cross_examples, _ = builders.cross_data(cross(root), work / "cross")
    ds = Dataset(root, cache=work / "stores")
    passages = [(pid, title or None, text) for pid, title, text in ds.corpus]  # the store, by row
    return {
        "dual": everything(examples),
        "dev": (dev.queries, dev.qrels, dev.corpus, dev.name),
        "cross": everything(cross_examples),
        "pipeline": (passages, ds.queries, ds.qrels, ds.dev_judged),
    }


@pytest.mark.parametrize(("scheme", "titles"), [("official", False), ("rocketqa", True)])
def test_official_and_rocketqa_names_give_the_same_examples_and_dev_set(tmp_path, scheme, titles):
    ours = read_dir(write_marco(tmp_path / "ours", "ours", titles), tmp_path / "w_ours")
    theirs = read_dir(write_marco(tmp_path / scheme, scheme, titles), tmp_path / f"w_{scheme}")
    assert theirs == ours
    queries, qrels, corpus, _ = ours["dev"]
    assert list(queries) == list(DEV) and qrels == DEV_QRELS
    assert corpus["p1"] == (("title 1" if titles else None), PASSAGES["p1"][1])
    assert len(ours["dual"]) == 8 and len(ours["cross"]) == 8 * 5


def test_triples_under_the_official_name(tmp_path):
    ours, official = (
        write_marco(tmp_path / "ours", "ours"),
        write_marco(tmp_path / "off", "official"),
    )
    got = [everything(builders.dual_data(dual(r, negatives="triples"), tmp_path / r.name)[0])
           for r in (ours, official)]  # fmt: skip
    assert got[0] == got[1] and got[0][0]["negatives"][0]["text"] == "passage number 9"


def test_a_missing_file_names_every_name_looked_for(tmp_path):
    root = write_marco(tmp_path / "m", "official")
    (root / "queries.train.tsv").unlink()
    with pytest.raises(FileNotFoundError, match=r"queries\.train\.tsv or train\.query\.txt"):
        builders.dual_data(dual(root), tmp_path / "w")
    assert F.marco_file(root, "queries.dev") == root / "queries.dev.small.tsv"
    F.write_id_text(root / "queries.dev.tsv", [F.TextRecord("d0", "x")])
    assert F.marco_file(root, "queries.dev") == root / "queries.dev.tsv"  # ours first
    assert F.marco_file(root, "titles", required=False) is None


def test_the_official_small_dev_pair_goes_together(tmp_path):
    """MS MARCO's downloads hold queries.dev.tsv (101k queries) beside the small pair: with
    only the small qrels, the small queries are the dev set."""
    root = write_marco(tmp_path / "m", "official")
    F.write_id_text(root / "queries.dev.tsv", [F.TextRecord(f"x{i}", "q") for i in range(50)])
    assert F.marco_dev_files(root) == (root / "queries.dev.small.tsv", root / "qrels.dev.small.tsv")
    dev = builders.marco_dev_set(root, dual(root).data)
    assert list(dev.queries) == list(DEV)
    F.write_qrels(root / "qrels.dev.tsv", {"x0": {"p1": 1}})
    assert F.marco_dev_files(root) == (root / "queries.dev.tsv", root / "qrels.dev.tsv")


def test_two_column_qrels(tmp_path):
    _qrels_2col(tmp_path / "q.tsv", {"q1": {"p1": 1, "p2": 1}, "q2": {"p3": 1}})
    assert F.read_qrels(tmp_path / "q.tsv") == {"q1": {"p1": 1, "p2": 1}, "q2": {"p3": 1}}
    (tmp_path / "bad.tsv").write_text("q1\t0\tp1\n")
    with pytest.raises(F.FormatError, match=r"bad\.tsv:1: expected 'qid 0 pid relevance'"):
        F.read_qrels(tmp_path / "bad.tsv")


@pytest.mark.filterwarnings("ignore:.*train.run")  # the short run's own notes
def test_rocketqa_addition_qrels_are_never_negatives(tmp_path):
    """construct_marco_train_ce.py skips qrels.train.addition.tsv's pairs when it samples."""
    root = write_marco(tmp_path / "m", "rocketqa")
    # a run whose top 5 for t0 holds its positive, 3 literal-match positives and 1 other
    run = {"t0": [(p, -i) for i, p in enumerate(["p0", "p20", "p21", "p22", "p23"])]}
    F.write_run(tmp_path / "train.run", run)
    config = cross(root, train_run=str(tmp_path / "train.run"), cross_negatives_per_query=4)
    config.seed = 0

    def negatives_of_t0(work):
        examples = everything(builders.cross_data(config, work)[0])
        return {e["para"] for e in examples if e["query"] == TRAIN["t0"] and e["label"] == 0}

    assert negatives_of_t0(tmp_path / "w0") == {
        PASSAGES[p][1] for p in ["p20", "p21", "p22", "p23"]
    }
    _qrels_2col(root / "qrels.train.addition.tsv", {"t0": {"p20": 1, "p21": 1, "p22": 1}})
    assert negatives_of_t0(tmp_path / "w1") == {PASSAGES["p23"][1]}  # the others are skipped


# ----------------------------------------------------------------------------- no silent fallbacks


def test_sample_with_a_data_dir_is_refused_by_rqa_train(tmp_path, capsys):
    from rqa_jax.cli import main as rqa

    argv = ["train", "--config", "configs/demo_dual.py:runlocal", "--workdir", str(tmp_path),
            "--config.data.dir=/does/not/exist"]  # fmt: skip
    assert rqa(argv) == 1
    err = capsys.readouterr().err
    assert "data.source='sample' generates its data" in err
    assert "data.dir='/does/not/exist' would be ignored" in err and "data.source='marco'" in err
    assert not (tmp_path / "checkpoints").exists()


def _dual(**data):
    c = common.get_dual_config()
    for k, v in data.items():
        c.data[k] = v
    return c


def _cross(**data):
    c = common.get_cross_config()
    for k, v in data.items():
        c.data[k] = v
    return c


def _joint(**data):
    c = common.get_joint_config()
    for k, v in data.items():
        c.data[k] = v
    return c


REFUSED = [  # (config, the message's key words)
    (_dual(source="sample", dir="/x"), r"data\.dir='/x' would be ignored: set data\.source='marco'"),
    (_dual(source="sample", path="t.tsv"), r"data\.path='t\.tsv' would be ignored"),
    (_dual(source="marco", dir="/x", path="t.tsv"), r"data\.path='t\.tsv' would be ignored"),
    (_dual(source="marco", dir=""), r"data\.source='marco' reads .* set data\.dir"),
    (_dual(source="rocketqa_tsv", path=""), r"data\.source='rocketqa_tsv' .*: set data\.path"),
    (_dual(source="rocketqa_tsv", path="t.tsv", tfds_dir="/t"), r"data\.tfds_dir='/t' would be ignored"),
    (_dual(source="dpr", path="nq.json", negatives="triples"), r"data\.negatives='triples' would be ignored"),
    (_dual(source="tfds", path="t.tsv"), r"data\.path='t\.tsv' would be ignored"),
    (_dual(source="sample", dev_candidates_run="r.run"), r"dev_candidates_run='r\.run' would be ignored: .*run:K"),
    (_dual(source="nq"), r"data\.source must be one of sample\|marco\|rocketqa_tsv\|dpr\|tfds"),
    (_cross(source="rocketqa_tsv", path="c.tsv", train_run="r.run"), r"data\.train_run='r\.run' would be ignored: the TSV"),
    (_cross(source="rocketqa_tsv", path="c.tsv", dir="/x"), r"data\.dir='/x' would be ignored: .*data\.dev_run"),
    (_cross(source="rocketqa_tsv", path="c.tsv", dev_run="d.run"), r"data\.dev_run='d\.run' re-ranks .* set data\.dir"),
    (_cross(source="sample", dir="/x"), r"data\.dir='/x' would be ignored"),
    (_cross(source="marco", dir="/x", path="c.tsv"), r"data\.path='c\.tsv' would be ignored"),
    (_cross(source="marco", dir="/x", dev_candidates_run="r.run"), r"dev_candidates_run='r\.run' would be ignored: the re-ranker"),
    (_cross(source="dpr", path="nq.json"), r"data\.source must be one of sample\|marco\|rocketqa_tsv for the cross task"),
    (_joint(source="rocketqa_tsv", path="j.tsv", train_run="r.run"), r"data\.train_run='r\.run' would be ignored"),
    (_joint(source="sample", path="j.tsv"), r"data\.path='j\.tsv' would be ignored"),
    (_joint(source="rocketqa_tsv", path="j.tsv", dev_run="d.run"), r"set data\.dir"),
]  # fmt: skip


@pytest.mark.parametrize(("config", "message"), REFUSED, ids=[m[:40] for _, m in REFUSED])
def test_data_a_source_would_ignore_is_refused(config, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        builders.check_data(config)
    if config.task == "dual":  # the task's data builder checks before it reads anything
        with pytest.raises(ValueError, match=message):
            builders.dual_data(config, tmp_path)
    elif config.task == "cross":
        with pytest.raises(ValueError, match=message):
            builders.cross_data(config, tmp_path)


ACCEPTED = [
    _dual(source="sample"),
    _dual(source="marco", dir="/x", negatives="triples"),
    _dual(source="rocketqa_tsv", path="t.tsv", dir="/dev_files"),  # dev evaluation's files
    _dual(source="tfds", dir="/manual", tfds_dir="/built"),
    _dual(source="marco", dir="/x", dev_corpus="run:10", dev_candidates_run="r.run"),
    _cross(source="marco", dir="/x", train_run="r.run", dev_run="d.run"),
    _cross(source="rocketqa_tsv", path="c.tsv", dir="/x", dev_run="d.run"),
    _joint(source="rocketqa_tsv", path="j.tsv", dir="/x"),  # the retriever's dev evaluation
    _joint(source="rocketqa_tsv", path="j.tsv", dir="/x", dev_run="d.run"),
]


@pytest.mark.parametrize("config", ACCEPTED)
def test_data_a_source_reads_is_accepted(config, capsys):
    config.eval_every = 10
    builders.check_data(config)
    assert capsys.readouterr().out == ""
    config.eval_every = 0  # read for dev evaluation only: said, not refused
    builders.check_data(config)


def test_dev_only_files_without_evaluation_are_said_not_read(capsys):
    builders.check_data(_cross(source="marco", dir="/x", dev_run="d.run"))  # eval_every=0
    assert "eval_every=0: data.dev_run='d.run' (read for dev evaluation only) is not read" in (
        capsys.readouterr().out
    )


def test_rocketqa_tsv_reranker_is_evaluated_on_data_dir_with_dev_run(tmp_path):
    """What `rqa pipeline v2`'s joint stage passes (a list TSV, data.dir, data.dev_run): the
    re-ranking dev set is built from data.dir, not dropped."""
    root = write_marco(tmp_path / "m", "rocketqa")
    F.write_cross_train(tmp_path / "c.tsv", [F.CrossTrainRow("q", None, "p", 1)])
    F.write_run(
        tmp_path / "d.run", {q: [(f"p{10 + i}", 1.0), ("p0", 0.5)] for i, q in enumerate(DEV)}
    )
    c = _cross(source="rocketqa_tsv", path=str(tmp_path / "c.tsv"), dir=str(root),
               dev_run=str(tmp_path / "d.run"))  # fmt: skip
    c.eval_every = 5
    examples, (dev, run) = builders.cross_data(c, tmp_path / "w")
    assert len(examples) == 1 and set(dev.queries) == set(DEV) and dev.qrels == DEV_QRELS
    assert set(dev.corpus) == {"p0", "p10", "p11", "p12", "p13", "p14"} and run["d0"][0][0] == "p10"
