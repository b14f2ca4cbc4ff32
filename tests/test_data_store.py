"""Training data at scale: text files converted once into lazy stores, read by index; epochs
that never share a batch; DPR negatives sampled per epoch."""

import json

import pytest

from configs import common
from rqa_jax.data import examples as E
from rqa_jax.data import formats as F
from rqa_jax.data import store
from rqa_jax.data.loader import BatchSpec, Loader
from rqa_jax.data.sample import generate
from rqa_jax.train import builders


def dual_config(**data):
    c = common.get_dual_config()
    c.eval_every = 0
    for k, v in data.items():
        setattr(c.data, k, v)
    return c


@pytest.fixture(scope="module")
def marco_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("marco")
    generate(d, entities_per_type=4, train_queries=30, dev_queries=6, seed=2)
    F.write_triples(
        d / "triples.train.tsv", [F.Triple(f"q{i}", f"pos {i}", f"neg {i}") for i in range(9)]
    )
    return d


def test_lazy_sources_equal_the_eager_lists(marco_dir, tmp_path):
    triples, _ = builders.dual_data(
        dual_config(source="marco", dir=str(marco_dir), negatives="triples"), tmp_path
    )
    assert not isinstance(triples, list)
    assert list(triples) == list(E.dual_from_triples(marco_dir / "triples.train.tsv"))
    tsv = tmp_path / "dual.tsv"
    F.write_dual_train(
        tsv,
        [F.DualTrainRow(f"q{i}", "t" if i % 2 else None, f"p{i}", None, f"n{i}") for i in range(7)],
    )
    lazy, _ = builders.dual_data(dual_config(source="rocketqa_tsv", path=str(tsv)), tmp_path)
    assert [lazy[i] for i in range(len(lazy))] == list(E.dual_from_rocketqa_tsv(tsv))
    # MS MARCO's random negatives: at epoch 0 exactly the eager function's draw
    config = dual_config(source="marco", dir=str(marco_dir), num_random_negatives=3)
    config.seed = 4
    pairs, _ = builders.dual_data(config, tmp_path)
    eager = list(E.dual_from_marco(marco_dir / "collection.tsv", marco_dir / "queries.train.tsv",
                                   marco_dir / "qrels.train.tsv", marco_dir / "titles.tsv", 3, seed=4))  # fmt: skip
    assert list(pairs) == eager and len(eager) == 30
    # ... and drawn afresh each epoch, never a judged passage, distinct
    qrels = F.read_qrels(marco_dir / "qrels.train.tsv")
    qid = {q.text: q.id for q in F.iter_queries(marco_dir / "queries.train.tsv")}
    later = pairs.read(range(len(pairs)), epoch=1)
    assert [e["positive"] for e in later] == [e["positive"] for e in eager]
    assert [e["negatives"] for e in later] != [e["negatives"] for e in eager]
    for ex in later + eager:
        ids = [n["id"] for n in ex["negatives"]]
        assert len(set(ids)) == 3 and not set(ids) & set(qrels[qid[ex["query"]]])


def test_converting_twice_reuses_the_store_and_a_changed_file_converts_again(marco_dir, tmp_path):
    config = dual_config(source="marco", dir=str(marco_dir), negatives="triples")
    builders.dual_data(config, tmp_path)
    stores = sorted((tmp_path / "data_cache").iterdir())
    assert [s.name.split("-")[0] for s in stores] == ["dual_triples"]
    meta = stores[0] / store.META
    stamp = meta.stat().st_mtime_ns
    again, _ = builders.dual_data(config, tmp_path)
    assert (
        sorted((tmp_path / "data_cache").iterdir()) == stores and meta.stat().st_mtime_ns == stamp
    )
    assert again.records.dir == stores[0]
    # another cache dir is honoured; a rewritten file gets a new store
    triples = tmp_path / "m" / "triples.train.tsv"
    triples.parent.mkdir()
    F.write_triples(triples, [F.Triple("q", "p", "n")] * 2)
    config.data.dir, config.data.cache_dir = str(triples.parent), str(tmp_path / "cache")
    first, _ = builders.dual_data(config, tmp_path)
    F.write_triples(triples, [F.Triple("q", "p", "n")] * 3)
    second, _ = builders.dual_data(config, tmp_path)
    assert (len(first), len(second)) == (2, 3) and first.records.dir != second.records.dir
    assert json.loads((second.records.dir / store.META).read_text())["count"] == 3


def test_an_interrupted_conversion_leaves_no_store(tmp_path):
    def records():
        yield [1]
        raise RuntimeError("disk full")

    src = tmp_path / "in.txt"
    src.write_text("x")
    with pytest.raises(RuntimeError):
        store.ensure(tmp_path / "c", "k", [src], {}, records, progress=False)
    assert list((tmp_path / "c").iterdir()) == []
    d = store.ensure(tmp_path / "c", "k", [src], {}, lambda: iter([[1], [2, "b"]]), progress=False)
    assert list(store.RecordStore(d)) == [[1], [2, "b"]]


def test_no_example_twice_in_a_global_batch_across_epoch_boundaries():
    data = [{"i": i} for i in range(22)]  # 11 per process, 2 batches of 4: 3 left each epoch
    spec = BatchSpec("dual", 8)
    loaders = [Loader(data, None, spec, seed=6, num_epochs=5, process_index=p, process_count=2,
                      collate=list) for p in range(2)]  # fmt: skip
    assert loaders[0].steps_per_epoch == 2
    steps = [a + b for a, b in zip(*loaders, strict=True)]
    assert len(steps) == 10
    for step, batch in enumerate(steps):
        ids = [ex["i"] for ex in batch]
        assert len(set(ids)) == 8, (step, ids)  # seed 6: repeat-then-batch repeats at steps 2, 5, 8
    for epoch in range(5):
        seen = [ex["i"] for b in steps[2 * epoch : 2 * epoch + 2] for ex in b]
        assert len(set(seen)) == 16
    assert [ex["i"] for ex in steps[0]] != [ex["i"] for ex in steps[2]]  # reshuffled


def dpr_file(path, n=6, hard=5):
    ctx = F.Context
    examples = [
        F.DprExample(f"question {i}", ("a",), (ctx("T", f"positive {i}", f"p{i}"),),
                     tuple(ctx(None, f"other {i} {j}", f"o{i}-{j}") for j in range(3)),
                     tuple(ctx("H", f"hard {i} {j}", f"h{i}-{j}") for j in range(hard if i else 1)))
        for i in range(n)
    ] + [F.DprExample("no positive", ("a",), ())]  # fmt: skip
    F.write_dpr_examples(path, examples)
    return path


def test_dpr_negatives_are_sampled_per_epoch_and_seeded(tmp_path):
    path = dpr_file(tmp_path / "nq-train.json")
    config = dual_config(source="dpr", path=str(path))
    config.num_negatives = 2
    source, _ = builders.dual_data(config, tmp_path)
    assert len(source) == 6  # the question without a positive is skipped, as DPR does

    def negs(src, epoch):
        return [[n["id"] for n in ex["negatives"]] for ex in src.read(range(len(src)), epoch)]

    epochs = [negs(source, e) for e in range(4)]
    assert len({json.dumps(e) for e in epochs}) == 4  # a new draw every epoch
    assert negs(builders.dual_data(config, tmp_path)[0], 2) == epochs[2]  # same seed, same draw
    config.seed = 1
    assert negs(builders.dual_data(config, tmp_path)[0], 0) != epochs[0]
    for draw in epochs:
        assert all(len(set(n)) == 2 and all(x.startswith(f"h{i}-") for x in n)
                   for i, n in enumerate(draw) if i)  # fmt: skip
        assert draw[0][0] == "h0-0" and draw[0][1].startswith("o0-")  # 1 hard: topped up
    firsts = {tuple(e[3]) for e in epochs}
    assert len(firsts) > 1  # not always the file's first k
    ex = source[3]
    assert ex["query"] == "question 3" and ex["positive"] == E.passage("p3", "T", "positive 3")
    # the loader asks the source for each epoch's draw
    loader = Loader(source, None, BatchSpec("dual", 6), shuffle=False, num_epochs=3,
                    process_index=0, process_count=1, collate=list)  # fmt: skip
    got = [[[n["id"] for n in ex["negatives"]] for ex in batch] for batch in loader]
    assert got == epochs[:3]


def test_tfds_nq_dpr_is_read_lazily_with_sampled_negatives(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    dpr_file(manual / "nq-train.json")
    config = dual_config(
        source="tfds", tfds_name="nq_dpr", dir=str(manual), tfds_dir=str(tmp_path / "tfds")
    )
    config.num_negatives = 2
    source, _ = builders.dual_data(config, tmp_path)
    plain, _ = builders.dual_data(
        dual_config(source="dpr", path=str(manual / "nq-train.json")), tmp_path
    )
    assert isinstance(source, E.DprSampledNegatives) and len(source) == 6
    by_query = {ex["query"]: ex for ex in plain}  # TFDS's order is its own; same draws per example
    for ex in source.read(range(6), epoch=1):
        assert ex["positive"] == by_query[ex["query"]]["positive"] and len(ex["negatives"]) == 2


def test_step_one_lays_out_four_lines_per_pair_as_the_released_data(marco_dir, tmp_path):
    """random_negative_lines=4: each (query, positive) four times an epoch, one negative per
    line, the four distinct and never judged, drawn afresh per epoch; the epoch is 4x longer
    and 1 line a pair is the draw it always was."""
    one = dual_config(source="marco", dir=str(marco_dir))
    four = dual_config(source="marco", dir=str(marco_dir), random_negative_lines=4)
    base, _ = builders.dual_data(one, tmp_path)
    lines, _ = builders.dual_data(four, tmp_path)
    assert len(lines) == 4 * len(base) == 120
    qrels = F.read_qrels(marco_dir / "qrels.train.tsv")
    qid = {q.text: q.id for q in F.iter_queries(marco_dir / "queries.train.tsv")}
    for epoch in (0, 1):
        got = lines.read(range(len(lines)), epoch=epoch)
        assert [e["positive"] for e in got] == [e["positive"] for e in base for _ in range(4)]
        for p in range(len(base)):
            group = got[4 * p : 4 * p + 4]
            ids = [e["negatives"][0]["id"] for e in group]
            assert len(set(ids)) == 4 and not set(ids) & set(qrels[qid[group[0]["query"]]])
    assert lines.read([5], 0) != lines.read([5], 1)
    # steps per epoch: the released data's lines / batch (MS MARCO: 532,761 pairs x 4 / 4096)
    spec = BatchSpec("dual", 8, 16, 16)
    assert Loader(lines, None, spec, collate=list).steps_per_epoch == 120 // 8
    # ignored elsewhere: refused
    with pytest.raises(ValueError, match="random_negative_lines=4 would be ignored"):
        builders.dual_data(dual_config(source="marco", dir=str(marco_dir), negatives="triples",
                                       random_negative_lines=4), tmp_path)  # fmt: skip


def test_step_one_config_on_your_own_tsv_reads_its_lines_and_says_the_layout_is_not_read(
    tmp_path, capsys
):
    """The MS MARCO step-1 config (4 lines a pair) pointed at a RocketQA TSV: the file's lines
    are the epoch, and the config's layout is named as not read rather than refused."""
    rows = [F.DualTrainRow(f"q{i}", None, f"pos {i}", None, f"neg {i}") for i in range(9)]
    F.write_dual_train(tmp_path / "train.tsv", rows)
    c = dual_config(
        source="rocketqa_tsv", path=str(tmp_path / "train.tsv"), random_negative_lines=4
    )
    lines, _ = builders.dual_data(c, tmp_path)
    assert len(lines) == 9
    assert "data.random_negative_lines=4 is not read" in capsys.readouterr().out


def test_marco_step_one_config_has_the_released_epoch():
    """MS MARCO step 1: 532,761 train (query, positive) pairs x 4 lines / 4096 a batch = 520
    steps per epoch, 40 epochs ~ 20.8k steps (the released de0 data's size)."""
    from configs import rocketqa_v1_marco

    c = rocketqa_v1_marco.get_config()
    lines = 532_761 * c.data.random_negative_lines
    assert c.data.num_random_negatives == 1 and lines == 2_131_044
    assert c.num_epochs * (lines // c.train_batch_size) == 40 * 520 == 20_800
