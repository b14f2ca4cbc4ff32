"""The generated sample dataset: deterministic, consistent, and not solvable by word overlap."""

import math
from collections import Counter
from difflib import SequenceMatcher

from rqa_jax.data import formats as F
from rqa_jax.data.sample import generate


def test_same_seed_same_bytes_other_seed_other_data(tmp_path):
    a = generate(tmp_path / "a", entities_per_type=20, train_queries=60, dev_queries=20, seed=3)
    b = generate(tmp_path / "b", entities_per_type=20, train_queries=60, dev_queries=20, seed=3)
    c = generate(tmp_path / "c", entities_per_type=20, train_queries=60, dev_queries=20, seed=4)
    for name in a:
        assert a[name].read_bytes() == b[name].read_bytes(), name
    assert a["queries.dev"].read_bytes() != c["queries.dev"].read_bytes()


def test_default_sample_is_consistent_ms_marco(tmp_path):
    paths = generate(tmp_path)
    corpus = {r.id: r for r in F.iter_collection(paths["collection"])}
    titles = F.read_titles(paths["titles"])
    assert len(corpus) == 2400 and set(titles) == set(corpus)
    entities = {}
    for split, n in (("train", 600), ("dev", 200)):
        queries = list(F.iter_queries(paths[f"queries.{split}"]))
        qrels = F.read_qrels(paths[f"qrels.{split}"], corpus_ids=corpus, strict=True)
        assert len(queries) == n and set(qrels) == {q.id for q in queries}
        entities[split] = {titles[pid] for docs in qrels.values() for pid in docs}
    assert not entities["train"] & entities["dev"]  # dev asks about unseen entities


def test_word_overlap_does_not_solve_the_dev_split(tmp_path):
    paths = generate(tmp_path)
    corpus = list(F.iter_collection(paths["collection"]))
    titles = F.read_titles(paths["titles"])
    qrels = F.read_qrels(paths["qrels.dev"])

    def words(text):
        return [w.strip("?.,'s").lower() for w in text.split()]

    docs = [Counter(words(f"{titles[p.id]} {p.text}")) for p in corpus]
    df = Counter(w for d in docs for w in d)
    idf = {w: math.log(len(docs) / n) for w, n in df.items()}
    mrr = 0.0
    queries = list(F.iter_queries(paths["queries.dev"]))
    for q in queries:
        qw = set(words(q.text))
        scores = [sum(idf.get(w, 0) for w in qw if w in d) for d in docs]
        top = sorted(range(len(docs)), key=lambda i: -scores[i])[:10]
        ranked = [corpus[i].id for i in top]
        hit = [r for r, pid in enumerate(ranked) if pid in qrels[q.id]]
        mrr += 1 / (hit[0] + 1) if hit else 0
    mrr /= len(queries)
    # The entity name finds the right 4 passages; the paraphrased attribute defeats overlap.
    assert mrr < 0.6, mrr


def test_rocketqa_sample_plants_false_negatives_and_unlabeled_questions(tmp_path):
    """Sparse train labels as MS MARCO's: restatements of the answer the train qrels do not
    list (recorded apart), full dev judgements, and unlabeled questions answerable from the
    corpus; the default sample stays byte-identical (test above)."""
    paths = generate(tmp_path, entities_per_type=20, train_queries=60, dev_queries=20,
                     false_negative_share=0.8, max_restatements=3, unlabeled_questions=30)  # fmt: skip
    corpus = {r.id: r.text for r in F.iter_collection(paths["collection"])}
    train = F.read_qrels(paths["qrels.train"], corpus_ids=corpus, strict=True)
    planted = F.read_qrels(paths["false_negatives.train"], corpus_ids=corpus, strict=True)
    dev = F.read_qrels(paths["qrels.dev"], corpus_ids=corpus, strict=True)
    assert all(len(docs) == 1 for docs in train.values())  # one labelled positive each
    assert 0.6 < len(planted) / len(train) <= 1.0  # most train queries have unlabeled positives
    for qid, docs in planted.items():
        (pos,) = train[qid]
        assert not set(docs) & set(train[qid]) and 1 <= len(docs) <= 3
        for p in docs:  # the same fact, restated: most of the text is shared
            a, b = corpus[pos], corpus[p]
            m = SequenceMatcher(None, a, b, autojunk=False).find_longest_match(0, len(a), 0, len(b))
            assert m.size >= 0.5 * min(len(a), len(b)), (a, b)
    assert max(len(d) for d in dev.values()) > 1  # dev judges every relevant passage
    unlabeled = {q.id: q.text for q in F.iter_queries(paths["queries.unlabeled"])}
    hidden = F.read_qrels(paths["qrels.unlabeled.hidden"], corpus_ids=corpus, strict=True)
    labelled = {q.text for s in ("train", "dev") for q in F.iter_queries(paths[f"queries.{s}"])}
    assert len(unlabeled) == 30 and set(hidden) == set(unlabeled)
    assert not set(unlabeled.values()) & labelled
