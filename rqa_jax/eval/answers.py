"""Answer matching for Natural Questions, in the two forms RocketQA's released code uses.

* :func:`has_answer` (DPR's): Unicode NFD, a simple tokenizer (runs of letters/digits/marks,
  or any other single non-space character), uncased; a passage counts if some answer's token
  sequence occurs in its text (the title is not searched). RocketQA's published answer
  recall (``metric/nq_eval.py``) is this, on answers first normalised by
  :func:`released_answers`.
* :func:`contains_answer` (RocketQA's ``data_process/utils.has_answer``, which labels its NQ
  training data): lower-cased, spaces removed, a plain substring test, so "art" is found in
  "start"; the construct scripts try the passage text, then its title.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence

import regex

from rqa_jax.errors import MissingIdError

_TOKEN = regex.compile(
    r"([\p{L}\p{N}\p{M}]+)|([^\p{Z}\p{C}])", flags=regex.IGNORECASE | regex.UNICODE
)


def tokens(text: str) -> list[str]:
    return [m.group().lower() for m in _TOKEN.finditer(unicodedata.normalize("NFD", text))]


def has_answer(text: str, answers: Sequence[str]) -> bool:
    words = tokens(text)
    for answer in answers:
        target = tokens(answer)
        n = len(target)
        if n and any(words[i : i + n] == target for i in range(len(words) - n + 1)):
            return True
    return False


def released_answers(answers: Sequence[str]) -> list[str]:
    """Answers as RocketQA's ``load_answers`` reads them: dots stripped from both ends,
    lower-cased (so "Jr." matches "Jr"; an answer of dots alone becomes "", which
    :func:`contains_answer` finds in every passage, as the released matcher does, and
    :func:`has_answer` in none)."""
    return [a.strip(".").lower() for a in answers]


def contains_answer(text: str, answers: Sequence[str]) -> bool:
    """RocketQA's training-data matcher: some answer, lower-cased with spaces (U+0020) removed,
    is a substring of the text treated alike."""
    squeezed = text.strip().lower().replace(" ", "")
    return any(a.strip().lower().replace(" ", "") in squeezed for a in answers)


def answer_recall(
    run: Mapping[str, Sequence[tuple[str, float]]],
    answers: Mapping[str, Sequence[str]],
    passages: Mapping[str, str],
    ks: Sequence[int] = (5, 20, 100),
) -> dict[str, float]:
    """RocketQA's NQ answer recall@k (``metric/nq_eval.py``): the share of questions with a
    passage among the run's top k whose text holds an answer (DPR's matcher on
    :func:`released_answers`). Every question of ``answers`` counts (the released script
    divides by the run's queries: the same when every question was searched)."""
    hits = first_answer_ranks(run, answers, passages, max(ks))
    n = max(len(answers), 1)
    return {
        f"answer_recall@{k}": sum(r is not None and r <= k for r in hits.values()) / n for k in ks
    }


def first_answer_ranks(
    run: Mapping[str, Sequence[tuple[str, float]]],
    answers: Mapping[str, Sequence[str]],
    passages: Mapping[str, str],
    depth: int,
) -> dict[str, int | None]:
    """Per question: the rank (1-based) of the first of its top ``depth`` passages that holds
    an answer (DPR's matcher on :func:`released_answers`), or None."""
    out: dict[str, int | None] = {}
    for qid, golds in answers.items():
        normalised, out[qid] = released_answers(golds), None
        for rank, (pid, _) in enumerate(run.get(qid, [])[:depth], start=1):
            if pid not in passages:
                raise MissingIdError(f"run names passage {pid!r} that is not in the corpus")
            if has_answer(passages[pid], normalised):
                out[qid] = rank
                break
    return out


def answer_qrels(
    run: Mapping[str, Sequence[tuple[str, float]]],
    answers: Mapping[str, Sequence[str]],
    passages: Mapping[str, str],
    depth: int,
) -> dict[str, dict[str, int]]:
    """Relevance judged by answer matching, for the run's top ``depth`` of each question: the
    passages holding an answer (what NQ has instead of qrels), for ranking metrics."""
    out: dict[str, dict[str, int]] = {}
    for qid, golds in answers.items():
        normalised = released_answers(golds)
        hits = {
            pid: 1 for pid, _ in run.get(qid, [])[:depth] if has_answer(passages[pid], normalised)
        }
        if hits:
            out[qid] = hits
    return out


def top_k_accuracy(
    run: Mapping[str, Sequence[tuple[str, float]]],
    answers: Mapping[str, Sequence[str]],
    passages: Mapping[str, str],
    ks: Sequence[int] = (1, 5, 20, 100),
) -> dict[str, float]:
    """Fraction of questions (all of ``answers``) with an answer in the top k passages' text."""
    first_hit: list[int | None] = []
    for qid, golds in answers.items():
        hit = None
        for rank, (pid, _) in enumerate(run.get(qid, []), start=1):
            if pid not in passages:
                raise MissingIdError(f"run names passage {pid!r} that is not in the corpus")
            if has_answer(passages[pid], golds):
                hit = rank
                break
        first_hit.append(hit)
    n = max(len(first_hit), 1)
    return {f"top{k}_accuracy": sum(h is not None and h <= k for h in first_hit) / n for k in ks}
