"""grain loader: batch shapes per step kind, exact per-process sharding, exact resume."""

import jax
import numpy as np
import pytest

from rqa_jax import parallel
from rqa_jax.data import examples as E
from rqa_jax.data.loader import BatchSpec, Loader, tokenize_batch
from rqa_jax.data.sample import generate


def dual_examples(n):
    return [
        {"query": f"what is {i}", "positive": E.passage("", "t", f"the dog {i}"),
         "negatives": [E.passage("", "", f"a cat {i} {j}") for j in range(3)]}
        for i in range(n)
    ]  # fmt: skip


def list_examples(n, m):
    return [
        {"query": f"q {i}", "titles": ["title"] + [""] * (m - 1),
         "paras": [f"para {i} {j}" for j in range(m)], "labels": [1] + [0] * (m - 1)}
        for i in range(n)
    ]  # fmt: skip


def shapes(batch):
    return jax.tree.map(lambda x: (x.shape, str(x.dtype)), batch)


def test_dual_batch_shapes(tiny_tokenizer):
    spec = BatchSpec("dual", 8, q_max_len=12, p_max_len=20, num_negatives=2)
    batch = next(Loader(dual_examples(16), tiny_tokenizer, spec))
    tok = {k: None for k in ("input_ids", "token_type_ids", "attention_mask")}
    assert shapes(batch) == {
        "query": {k: ((8, 12), "int32") for k in tok},
        "passages": {k: ((8, 3, 20), "int32") for k in tok},
    }
    # positive first: its encoding carries the title segment
    assert (batch["passages"]["token_type_ids"][:, 0].max(axis=1) == 1).all()
    assert (batch["passages"]["token_type_ids"][:, 1:] == 0).all()


def test_cross_pointwise_and_group_and_joint_shapes(tiny_tokenizer):
    pairs = [{"query": "q", "title": "", "para": f"p {i}", "label": i % 2} for i in range(8)]
    b = next(Loader(pairs, tiny_tokenizer, BatchSpec("cross", 4, cross_max_len=16), shuffle=False))
    assert b["pairs"]["input_ids"].shape == (4, 16) and b["labels"].tolist() == [0, 1, 0, 1]
    groups = next(
        Loader(
            list_examples(8, 3),
            tiny_tokenizer,
            BatchSpec("cross", 4, cross_max_len=16, list_size=3),
        )
    )
    assert groups["pairs"]["input_ids"].shape == (4, 3, 16) and groups["labels"].shape == (4, 3)
    spec = BatchSpec("joint", 4, q_max_len=8, p_max_len=12, cross_max_len=16, list_size=3)
    joint = next(Loader(list_examples(8, 3), tiny_tokenizer, spec))
    assert joint["query"]["input_ids"].shape == (4, 8)
    assert joint["passages"]["input_ids"].shape == (4, 3, 12)
    assert joint["pairs"]["input_ids"].shape == (4, 3, 16)
    assert (joint["labels"][:, 0] == 1).all() and (joint["labels"][:, 1:] == 0).all()


def test_processes_read_slices_of_the_same_global_batches(tiny_tokenizer):
    """4 processes' batches, side by side, are the 1-process run's global batches: the data
    order does not depend on how many hosts train (and every example comes once)."""
    data = [{"i": i} for i in range(64)]
    whole = Loader(data, None, BatchSpec("dual", 8), seed=5, num_epochs=1, process_index=0,
                   process_count=1, collate=list)  # fmt: skip
    global_batches = [[ex["i"] for ex in batch] for batch in whole]
    parts = []
    for p in range(4):
        loader = Loader(data, None, BatchSpec("dual", 8), seed=5, num_epochs=1,
                        process_index=p, process_count=4, collate=list)  # fmt: skip
        assert loader.local_batch_size == 2 and loader.steps_per_epoch == 8
        parts.append([[ex["i"] for ex in batch] for batch in loader])
    joined = [[i for p in range(4) for i in parts[p][step]] for step in range(8)]
    assert joined == global_batches
    assert sorted(i for b in joined for i in b) == list(range(64))  # every example once


def test_epochs_reshuffle_and_cover_everything():
    data = [{"i": i} for i in range(12)]
    loader = Loader(data, None, BatchSpec("dual", 4), seed=0, num_epochs=2, collate=list,
                    process_index=0, process_count=1)  # fmt: skip
    order = [ex["i"] for batch in loader for ex in batch]
    first, second = order[:12], order[12:]
    assert sorted(first) == sorted(second) == list(range(12)) and first != second


@pytest.mark.parametrize("taken", [1, 3, 5])  # 3 batches per epoch: 5 crosses an epoch
def test_restoring_state_continues_exactly(tiny_tokenizer, taken):
    data = dual_examples(12)
    spec = BatchSpec("dual", 4, q_max_len=12, p_max_len=16, num_negatives=1)
    make = lambda: Loader(data, tiny_tokenizer, spec, seed=3, process_index=0, process_count=1)  # noqa: E731
    run = make()
    for _ in range(taken):
        next(run)
    state = run.get_state()
    expected = [next(run) for _ in range(4)]
    resumed = make()
    resumed.set_state(state)
    for want in expected:
        jax.tree.map(np.testing.assert_array_equal, next(resumed), want)


def test_bad_specs_and_examples_are_clear_errors(tiny_tokenizer):
    with pytest.raises(ValueError, match="does not split over 3 processes"):
        Loader(
            dual_examples(16),
            tiny_tokenizer,
            BatchSpec("dual", 8),
            process_index=0,
            process_count=3,
        )
    with pytest.raises(ValueError, match="need 5"):
        tokenize_batch(BatchSpec("dual", 2, num_negatives=5), tiny_tokenizer, dual_examples(2))
    bad = list_examples(2, 3)
    bad[1]["labels"] = [0, 1, 0]
    with pytest.raises(ValueError, match="positive must come first"):
        tokenize_batch(BatchSpec("joint", 2, list_size=3), tiny_tokenizer, bad)
    with pytest.raises(ValueError, match="kind must be one of"):
        BatchSpec("triplet", 2)


def test_sample_data_loads_into_a_global_batch_on_8_devices(tmp_path, tiny_tokenizer):
    paths = generate(tmp_path, entities_per_type=4, train_queries=16, dev_queries=4)
    data = list(E.dual_from_marco(paths["collection"], paths["queries.train"], paths["qrels.train"],
                                  paths["titles"], num_negatives=1))  # fmt: skip
    local = next(Loader(data, tiny_tokenizer, BatchSpec("dual", 16, q_max_len=16, p_max_len=32)))
    mesh = parallel.make_mesh()
    glob = parallel.global_batch(local, mesh)
    arr = glob["passages"]["input_ids"]
    assert arr.shape == (16, 2, 32) and len(arr.sharding.device_set) == 8
    assert arr.addressable_shards[0].data.shape == (2, 2, 32)
    np.testing.assert_array_equal(np.asarray(arr), local["passages"]["input_ids"])
