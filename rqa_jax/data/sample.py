"""A small, seeded MS MARCO-format dataset that retrieval training visibly improves.

Invented entities (towns, companies, rivers, scientists, bands) each get one passage per
attribute ("Valmora was founded in 1743 ..."). A question asks for one attribute of one
entity in paraphrase ("In what year was Valmora established?"), so:

* the entity name, the question's only rare word, also names the entity's other passages
  (distractors that share the answer passage's title and subject), and
* the attribute words of the question are paraphrases, often borrowing a word from another
  passage of the same entity ("How many people are *settled* in X?" asks for the population,
  not the founding by *settlers*), while other entities' passages about the same attribute
  repeat the answer passage's wording.

Lexical overlap alone cannot solve it; a retriever has to learn which attribute a question
asks for. Train and dev queries are about disjoint entities.

    python -m rqa_jax.data.sample OUT_DIR [--entities-per-type 120] [--seed 0]
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from rqa_jax.data import formats
from rqa_jax.errors import UserInputError

SYLLABLES = [
    "val",
    "mor",
    "tesk",
    "ari",
    "bel",
    "cor",
    "dun",
    "eth",
    "fal",
    "gor",
    "hal",
    "ist",
    "jor",
    "kel",
    "lum",
    "nar",
    "oss",
    "pel",
    "quin",
    "ras",
    "sol",
    "tav",
    "ur",
    "ven",
    "wyl",
    "zan",
    "brek",
    "dra",
    "fen",
]
PLACES = [
    "Orrin",
    "Kessa",
    "Thule",
    "Marrow",
    "Ostia",
    "Vellan",
    "Quarry",
    "Dunmoor",
    "Hesk",
    "Lyra",
]
PEOPLE = ["Ada", "Brenn", "Corin", "Dalia", "Elro", "Fiora", "Gael", "Hanne", "Ivo", "Juna"]
GOODS = ["copper", "wool", "timber", "salt", "glass", "amber", "tin", "olives"]

# type -> attribute -> (passage templates, question templates); {e} is the entity name,
# the other fields are values drawn per entity (see ``values`` in :func:`generate`).
SCHEMA: dict[str, dict[str, tuple[list[str], list[str]]]] = {
    "town": {
        "founded": (["{e} was founded in {y} by settlers from {b}."],
                    ["How many years ago did the first residents arrive in {e}?", "Since when have people lived in {e}?"]),
        "population": (["{e} has a population of about {a} thousand residents."],
                       ["How many people are settled in {e} now?", "What is the headcount of {e}?"]),
        "export": (["The main export of {e} is {d}, shipped mostly to {b}."],
                   ["Which goods do the settlers of {e} sell to other towns?", "What trade made {e} rich?"]),
        "mayor": (["The current mayor of {e} is {n} {b}son."],
                  ["Who was elected to run {e}, which exports goods?", "Who is in charge of {e} at present?"]),
    },
    "company": {
        "founded": (["{e} was founded in {y} by {n} as a small workshop."],
                    ["How long ago did the staff of {e} first open shop?", "What is the year {e} was set up?"]),
        "headquarters": (["{e} has its headquarters in {b}, near the old harbour."],
                         ["Where do the people of {e} go to the head office?", "In which city does {e} sit?"]),
        "employees": (["{e} employs roughly {a} hundred people across its sites."],
                      ["How many workers does {e} have at its headquarters and elsewhere?", "What is the size of {e}'s team?"]),
        "product": (["{e} is best known for making {d} tools and fittings."],
                    ["What do the people who work at {e} build?", "What does {e} turn out?"]),
    },
    "river": {
        "length": (["The {e} river is {a} kilometres long from source to mouth."],
                   ["How far is it from where the {e} begins to where it ends?", "What is the extent of the {e}?"]),
        "source": (["The {e} rises in the hills above {b}."],
                   ["Where is the {e} at its start, many kilometres from the sea?", "Where does the {e} come from?"]),
        "mouth": (["The {e} empties into the sea at {b}."],
                  ["Where does the long {e} river finish?", "Where does the {e} stop flowing?"]),
        "bridge": (["The oldest bridge over the {e} was built in {y} of {d}-coloured stone."],
                   ["When could people first walk across the {e} river?", "What year did the first crossing of the {e} open?"]),
    },
    "scientist": {
        "born": (["{e} was born in {b} in {y}."],
                 ["Which town did {e} come from before the university years?", "Where did {e} grow up?"]),
        "discovery": (["{e} is remembered for discovering how {c} reacts with {d}."],
                      ["Which research result earned {e} a medal?", "What did {e} find out?"]),
        "university": (["{e} taught chemistry at the university of {b} for {a} years."],
                       ["Where did {e} lecture, far from where {e} was born?", "Which college employed {e}?"]),
        "award": (["In {y}, {e} received the {b} medal for research."],
                  ["What honour did {e} get for the discovery?", "Which prize went to {e}?"]),
    },
    "band": {
        "formed": (["{e} formed in {b} in {y} when four school friends met."],
                   ["When did the singer of {e} first play with the others?", "How long has {e} existed?"]),
        "album": (["The debut album of {e}, {c} Nights, sold {a} thousand copies."],
                  ["What was the first record that {e} put out?", "How well did the earliest LP of {e} sell?"]),
        "singer": (["The lead vocalist of {e} is {n} {b}."],
                   ["Who is the voice on the albums of {e}?", "Who fronts {e}?"]),
        "genre": (["{e} plays a mix of folk and {d}-age rock."],
                  ["What sound did {e} have when it formed?", "Which style is {e} known for?"]),
    },
}  # fmt: skip


def _name(rng: random.Random, used: set[str]) -> str:
    while True:
        name = "".join(rng.choice(SYLLABLES) for _ in range(rng.choice((2, 3)))).capitalize()
        if name not in used:
            used.add(name)
            return name


# Restatements of a passage: relevant to the same questions, worded as another source would.
RESTATEMENTS = [
    "From the {e} records: {text}",
    "A visitor's guide to {e} notes it plainly. {text}",
    "Local archives agree on this point about {e}. {text}",
    "{text} So say the people of {e}.",
]


# type -> attribute -> the answer string a question about it expects: part of the answer
# passage (and of its restatements), matched in passages as NQ matches answers.
ANSWERS: dict[str, dict[str, str]] = {
    "town": {"founded": "{y}", "population": "{a} thousand", "export": "{d}", "mayor": "{n} {b}son"},
    "company": {"founded": "{y}", "headquarters": "{b}", "employees": "{a} hundred", "product": "{d}"},
    "river": {"length": "{a} kilometres", "source": "{b}", "mouth": "{b}", "bridge": "{y}"},
    "scientist": {"born": "{y}", "discovery": "{c} reacts with {d}", "university": "{b}",
                  "award": "{b} medal"},
    "band": {"formed": "{y}", "album": "{c} Nights", "singer": "{n} {b}", "genre": "{d}-age rock"},
}  # fmt: skip


def generate(
    out_dir: str | Path,
    entities_per_type: int = 120,
    train_queries: int = 600,
    dev_queries: int = 200,
    seed: int = 0,
    *,
    false_negative_share: float = 0.0,
    max_restatements: int = 2,
    unlabeled_questions: int = 0,
    with_answers: bool = False,
) -> dict[str, Path]:
    """Writes collection.tsv, titles.tsv, queries.{train,dev}.tsv and qrels.{train,dev}.tsv;
    returns their paths by short name. Same arguments, same files, byte for byte.

    RocketQA's method needs what MS MARCO has and the default sample lacks:

    * ``false_negative_share`` > 0: that share of the answer passages get 1 to
      ``max_restatements`` restatements
      (other passages stating the same fact). Train qrels keep listing only the original, as
      MS MARCO's sparse labels do, so the restatements are *false negatives* for those train
      queries, recorded in ``false_negatives.train.tsv`` (qrels form; only the denoiser's
      evaluation reads it); dev qrels list every relevant passage.
    * ``unlabeled_questions`` > 0: ``queries.unlabeled.tsv``, questions about train-side
      entities that are neither train nor dev queries, whose answers are in the corpus
      (``qrels.unlabeled.hidden.tsv``, for judging pseudo labels only).
    * ``with_answers``: ``answers.{train,dev}.tsv`` (``qid \t answer``), the string each
      question asks for, found in its answer passage and that passage's restatements.
    """
    rng = random.Random(seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    passages: list[formats.TextRecord] = []
    # (entity index, question text, answer pid) per possible question
    questions: list[tuple[int, str, str]] = []
    entity = 0
    answer_of: dict[str, str] = {}  # answer passage id -> the answer string
    for kind, attributes in SCHEMA.items():
        for _ in range(entities_per_type):
            name = _name(rng, used)
            values = {
                "a": str(rng.randint(2, 98)),  # a count
                "y": str(rng.randint(1700, 1990)),  # a year
                "b": rng.choice(PLACES),
                "c": rng.choice(GOODS).capitalize(),
                "d": rng.choice(GOODS),
                "n": rng.choice(PEOPLE),
            }
            for attribute, (p_templates, q_templates) in attributes.items():
                pid = str(len(passages))
                answer_of[pid] = ANSWERS[kind][attribute].format(e=name, **values)
                text = rng.choice(p_templates).format(e=name, **values)
                passages.append(formats.TextRecord(pid, text, name))
                questions.append((entity, rng.choice(q_templates).format(e=name), pid))
            entity += 1
    rng.shuffle(passages)  # pids stay; order in the file is mixed
    # the options draw from their own generator: without them the files stay byte-identical
    extra_rng = random.Random(f"{seed}:rocketqa")
    copies: dict[str, list[str]] = {}  # answer pid -> its restatements' pids
    if false_negative_share > 0:
        originals = {p.id: p for p in passages}
        # Half the passages take a restatement's wording too, so no wording marks a passage
        # as labelled or not: a false negative is as relevant-looking as its positive.
        by_id = {
            p.id: formats.TextRecord(p.id, extra_rng.choice(RESTATEMENTS).format(e=p.title, text=p.text), p.title)
            if extra_rng.random() < 0.5 else p
            for p in passages
        }  # fmt: skip
        for _, _, pid in questions:
            if extra_rng.random() >= false_negative_share:
                continue
            source = originals[pid]
            for template in extra_rng.sample(RESTATEMENTS, extra_rng.randint(1, max_restatements)):
                new_id = str(len(by_id))
                text = template.format(e=source.title, text=source.text)
                by_id[new_id] = formats.TextRecord(new_id, text, source.title)
                copies.setdefault(pid, []).append(new_id)
        passages = list(by_id.values())
        extra_rng.shuffle(passages)
    entities = list(range(entity))
    rng.shuffle(entities)
    dev_entities = set(entities[: len(entities) // 4])
    pools = {
        "train": [q for q in questions if q[0] not in dev_entities],
        "dev": [q for q in questions if q[0] in dev_entities],
    }
    paths = {
        "collection": out / "collection.tsv",
        "titles": out / "titles.tsv",
    }
    formats.write_id_text(paths["collection"], passages)
    formats.write_titles(paths["titles"], {p.id: p.title for p in passages})
    chosen_train: list[tuple[int, str, str]] = []
    for split, wanted in (("train", train_queries), ("dev", dev_queries)):
        pool = pools[split]
        if wanted > len(pool):
            raise UserInputError(f"{wanted} {split} queries asked, only {len(pool)} possible")
        chosen = rng.sample(pool, wanted)
        chosen_train = chosen if split == "train" else chosen_train
        prefix = "t" if split == "train" else "d"
        queries = [formats.TextRecord(f"{prefix}{i}", q) for i, (_, q, _) in enumerate(chosen)]
        qrels = {f"{prefix}{i}": {pid: 1} for i, (_, _, pid) in enumerate(chosen)}
        if split == "dev":  # dev judges every relevant passage
            qrels = {q: {pid: 1 for p in docs for pid in (p, *copies.get(p, []))} for q, docs in qrels.items()}  # fmt: skip
        paths[f"queries.{split}"] = out / f"queries.{split}.tsv"
        paths[f"qrels.{split}"] = out / f"qrels.{split}.tsv"
        formats.write_id_text(paths[f"queries.{split}"], queries)
        formats.write_qrels(paths[f"qrels.{split}"], qrels)
        if with_answers:  # what each question asks for, as NQ gives answers
            paths[f"answers.{split}"] = out / f"answers.{split}.tsv"
            formats.write_lines(paths[f"answers.{split}"],
                                [f"{prefix}{i}\t{answer_of[pid]}" for i, (_, _, pid) in enumerate(chosen)])  # fmt: skip
    if false_negative_share > 0:
        planted = {f"t{i}": dict.fromkeys(copies[pid], 1) for i, (_, _, pid) in enumerate(chosen_train)
                   if pid in copies}  # fmt: skip
        paths["false_negatives.train"] = out / "false_negatives.train.tsv"
        formats.write_qrels(paths["false_negatives.train"], planted)
    if unlabeled_questions > 0:
        taken = {q for _, q, _ in chosen_train}
        rest = [x for x in pools["train"] if x[1] not in taken]
        if unlabeled_questions > len(rest):
            raise UserInputError(
                f"{unlabeled_questions} unlabeled questions asked, only {len(rest)} possible"
            )
        picked = extra_rng.sample(rest, unlabeled_questions)
        paths["queries.unlabeled"] = out / "queries.unlabeled.tsv"
        paths["qrels.unlabeled.hidden"] = out / "qrels.unlabeled.hidden.tsv"
        formats.write_id_text(paths["queries.unlabeled"], [formats.TextRecord(f"u{i}", q) for i, (_, q, _) in enumerate(picked)])  # fmt: skip
        formats.write_qrels(paths["qrels.unlabeled.hidden"],
                            {f"u{i}": {pid: 1 for pid in (p, *copies.get(p, []))} for i, (_, _, p) in enumerate(picked)})  # fmt: skip
    return paths


def write_dpr_form(
    sample_dir: str | Path, out_dir: str | Path, hard_negatives: int = 3
) -> dict[str, Path]:
    """A sample generated ``with_answers`` in DPR's Natural Questions form, as RocketQA's NQ
    recipe reads it: ``psgs_w100.tsv`` (the corpus with titles), ``nq-train.json`` (train
    questions, answers, their labelled passage as positive and up to ``hard_negatives``
    other passages of the same entity as hard negatives, the way DPR's BM25 ones look
    alike) and ``nq-test.qa.csv`` (the dev questions and answers)."""
    src, out = Path(sample_dir), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    titles = formats.read_titles(src / "titles.tsv")
    passages = {r.id: formats.TextRecord(r.id, r.text, titles.get(r.id))
                for r in formats.iter_collection(src / "collection.tsv")}  # fmt: skip
    by_title: dict[str | None, list[str]] = {}
    for pid, p in passages.items():
        by_title.setdefault(p.title, []).append(pid)

    def answers(split: str) -> dict[str, str]:
        return dict(
            line.split("\t", 1) for line in (src / f"answers.{split}.tsv").read_text().splitlines()
        )

    def ctx(pid: str) -> formats.Context:
        return formats.Context(passages[pid].title, passages[pid].text, pid)

    paths = {
        "psgs": out / "psgs_w100.tsv",
        "train": out / "nq-train.json",
        "test": out / "nq-test.qa.csv",
    }
    formats.write_dpr_passages(paths["psgs"], passages.values())
    qrels, gold = formats.read_qrels(src / "qrels.train.tsv"), answers("train")
    examples = []
    for q in formats.iter_queries(src / "queries.train.tsv"):
        positives = list(qrels[q.id])
        others = [pid for pid in by_title[passages[positives[0]].title] if pid not in positives]
        examples.append(formats.DprExample(q.text, (gold[q.id],), tuple(map(ctx, positives)), (),
                                           tuple(map(ctx, others[:hard_negatives]))))  # fmt: skip
    formats.write_dpr_examples(paths["train"], examples)
    gold = answers("dev")
    formats.write_qa_pairs(paths["test"], [formats.QaPair(q.text, (gold[q.id],))
                                           for q in formats.iter_queries(src / "queries.dev.tsv")])  # fmt: skip
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out_dir")
    parser.add_argument("--entities-per-type", type=int, default=120)
    parser.add_argument("--train-queries", type=int, default=600)
    parser.add_argument("--dev-queries", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--false-negative-share", type=float, default=0.0,
                        help="share of answers restated in unlabeled passages (default 0)")  # fmt: skip
    parser.add_argument("--max-restatements", type=int, default=2,
                        help="restatements per chosen answer, at most (default 2)")  # fmt: skip
    parser.add_argument("--unlabeled-questions", type=int, default=0,
                        help="questions without qrels, for augmentation (default 0)")  # fmt: skip
    args = parser.parse_args(argv)
    paths = generate(args.out_dir, args.entities_per_type, args.train_queries, args.dev_queries, args.seed,
                     false_negative_share=args.false_negative_share, max_restatements=args.max_restatements,
                     unlabeled_questions=args.unlabeled_questions)  # fmt: skip
    for name, path in paths.items():
        print(f"{name:>14}: {path}")


if __name__ == "__main__":
    main()
