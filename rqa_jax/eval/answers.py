"""NQ top-k answer accuracy, matched as DPR does: Unicode NFD, a simple tokenizer (runs of
letters/digits/marks, or any other single non-space character), uncased; a passage counts if
some answer's token sequence occurs in its text (the title is not searched)."""

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
