"""Readers and writers for every file format users bring, streaming, with errors naming file:line.

MS MARCO: collection (``pid \\t passage``), queries (``qid \\t query``), qrels
(``qid \\t 0 \\t pid \\t rel`` or whitespace TREC ``qid 0 pid rel``), triples
(``query \\t positive \\t negative``), titles (``pid \\t title``).
DPR Natural Questions: ``psgs_w100.tsv`` (``id \\t text \\t title`` with header), ``nq-*.json``
(a JSON list of questions with positive / negative / hard-negative contexts, streamed),
``*.qa.csv`` (``question \\t ["answer", ...]``).
RocketQA training TSVs: dual encoder (6 columns), cross encoder (4 columns), v2 joint lists
(blocks of ``list_size`` 4-column lines, positive first).
Runs: TREC (``qid Q0 pid rank score tag``) and RocketQA's (``qid \\t pid \\t rank \\t score``).

All text is UTF-8. A title ``-`` or empty means no title (read as None, written as ``-``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from rqa_jax.errors import UserFileNotFoundError, UserInputError

ID_TEXT_FORMATS = ("id_text_title", "id_title_text")
NO_TITLE = ("", "-")


class FormatError(UserInputError):
    """A line of an input file is not in the expected format; the message names file:line."""

    def __init__(self, path: str | Path, line_no: int, message: str) -> None:
        super().__init__(f"{path}:{line_no}: {message}")
        self.path, self.line_no = str(path), line_no


# ----------------------------------------------------------------------------- records


@dataclasses.dataclass(frozen=True)
class TextRecord:
    """A passage or a query: MS MARCO collection/queries rows, DPR psgs_w100 rows."""

    id: str
    text: str
    title: str | None = None


@dataclasses.dataclass(frozen=True)
class Triple:
    query: str
    positive: str
    negative: str


@dataclasses.dataclass(frozen=True)
class Context:
    """A DPR context: a passage with its title and corpus id ('' when the file has none)."""

    title: str | None
    text: str
    passage_id: str = ""


@dataclasses.dataclass(frozen=True)
class DprExample:
    question: str
    answers: tuple[str, ...]
    positive_ctxs: tuple[Context, ...]
    negative_ctxs: tuple[Context, ...] = ()
    hard_negative_ctxs: tuple[Context, ...] = ()


@dataclasses.dataclass(frozen=True)
class QaPair:
    question: str
    answers: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class DualTrainRow:
    """RocketQA dual-encoder training line: a query, one positive and one negative passage."""

    query: str
    pos_title: str | None
    pos_para: str
    neg_title: str | None
    neg_para: str


@dataclasses.dataclass(frozen=True)
class CrossTrainRow:
    """RocketQA cross-encoder training line: a labelled (query, passage) pair."""

    query: str
    title: str | None
    para: str
    label: int


@dataclasses.dataclass(frozen=True)
class JointList:
    """RocketQAv2 training instance: one query and its list of passages, positive first."""

    query: str
    titles: tuple[str | None, ...]
    paras: tuple[str, ...]
    labels: tuple[int, ...]


# A run: qid -> [(pid, score)] best first.
Run = dict[str, list[tuple[str, float]]]
# Qrels: qid -> {pid: relevance}.
Qrels = dict[str, dict[str, int]]


# ----------------------------------------------------------------------------- helpers


def title_or_none(title: str | None) -> str | None:
    return None if title is None or title.strip() in NO_TITLE else title


def _title_out(title: str | None) -> str:
    return "-" if title is None else title


def _open(path: str | Path) -> IO[str]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"input file {str(path)!r} does not exist")
    return path.open("r", encoding="utf-8", newline="\n")


def line_offsets(path: str | Path, every: int) -> list[tuple[int, int]]:
    """(byte offset, line number) of lines 1, every+1, 2·every+1, …: where to seek to read a
    file in slices of ``every`` lines (e.g. one shard per process) without re-reading it."""
    offsets, offset = [(0, 1)], 0
    with Path(path).open("rb") as f:
        for line_no, raw in enumerate(f, start=1):
            offset += len(raw)
            if line_no % every == 0:
                offsets.append((offset, line_no + 1))
    return offsets


def _lines(
    path: str | Path, skip: int = 0, start: tuple[int, int] = (0, 1)
) -> Iterator[tuple[int, str]]:
    """(line number, line without newline), from ``start`` = (byte offset, its line number).
    Decoded line by line, so bad UTF-8 names its line. Blank (empty or whitespace-only)
    lines at the end of the file are ignored; a blank line followed by more lines is an
    error naming it (every row format here has a non-blank row per line, and a blank line
    inside a file usually means a broken one, e.g. a text with a stray newline)."""
    path = Path(path)
    if not path.is_file():
        raise UserFileNotFoundError(f"input file {str(path)!r} does not exist")
    first_blank = 0
    with path.open("rb") as f:
        f.seek(start[0])
        for line_no, raw in enumerate(f, start=start[1]):
            if line_no <= skip:
                continue
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise FormatError(path, line_no, f"not valid UTF-8 ({e.reason})") from None
            line = line.rstrip("\r\n")
            if not line.strip():
                first_blank = first_blank or line_no
                continue
            if first_blank:
                raise FormatError(path, first_blank, "blank line (blank lines are only "
                                  "allowed at the end of the file)")  # fmt: skip
            yield line_no, line


def _tsv(
    path: str | Path, n_cols: int, layout: str, skip: int = 0
) -> Iterator[tuple[int, list[str]]]:
    """Rows with exactly ``n_cols`` tab-separated columns; ``layout`` names them for errors."""
    for line_no, line in _lines(path, skip):
        cols = line.split("\t")
        if len(cols) != n_cols:
            raise FormatError(
                path,
                line_no,
                f"expected {n_cols} tab-separated columns ({layout}), found {len(cols)}",
            )
        yield line_no, cols


def _nonempty(path: str | Path, line_no: int, value: str, what: str) -> str:
    if not value.strip():
        raise FormatError(path, line_no, f"empty {what}")
    return value


def _int(path: str | Path, line_no: int, value: str, what: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise FormatError(path, line_no, f"{what} must be an integer, found {value!r}") from None


def _write_lines(path: str | Path, lines: Iterable[str]) -> None:
    """Writes to ``path.partial`` then renames: a failed write never leaves a complete-looking file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    try:
        with tmp.open("w", encoding="utf-8", newline="\n") as f:
            for line in lines:
                f.write(line + "\n")
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


write_lines = _write_lines  # for steps that stream their own lines


def _clean(text: str) -> str:
    """Tabs and newlines inside a field would break the TSV: they become spaces."""
    return text.replace("\t", " ").replace("\n", " ").replace("\r", " ")


# ----------------------------------------------------------------------------- id / text TSVs


def iter_id_text(
    path: str | Path,
    allow_title: bool = True,
    fmt: str = "id_text_title",
    start: tuple[int, int] = (0, 1),
    raw_titles: bool = False,
) -> Iterator[TextRecord]:
    """Streams ``id \\t text [\\t title]`` (or ``id \\t title \\t text``) rows, validating each;
    ``start``: (byte offset, line number) to begin at, from :func:`line_offsets`.
    ``raw_titles``: keep the title column verbatim (``-`` and ``''`` stay as they are, as
    RocketQA's readers see them; None only where there is no title column)."""
    for _, rec in iter_id_text_lines(path, allow_title, fmt, start, raw_titles):
        yield rec


def iter_id_text_lines(
    path: str | Path,
    allow_title: bool = True,
    fmt: str = "id_text_title",
    start: tuple[int, int] = (0, 1),
    raw_titles: bool = False,
) -> Iterator[tuple[int, TextRecord]]:
    """:func:`iter_id_text` with each record's line number in the file: (line, record)."""
    if fmt not in ID_TEXT_FORMATS:
        raise UserInputError(f"format must be one of {ID_TEXT_FORMATS}, got {fmt!r}")
    if not allow_title:
        expected, allowed = "'id<TAB>text'", (2,)
    elif fmt == "id_text_title":
        expected, allowed = "'id<TAB>text[<TAB>title]'", (2, 3)
    else:
        expected, allowed = "'id<TAB>title<TAB>text'", (3,)
    for line_no, line in _lines(path, start=start):
        cols = line.split("\t")
        if len(cols) not in allowed:
            raise FormatError(
                path, line_no, f"expected {expected}, found {len(cols)} tab-separated column(s)"
            )
        if fmt == "id_title_text" and allow_title:
            rec_id, title, text = cols
        else:
            rec_id, text, title = cols[0], cols[1], (cols[2] if len(cols) == 3 else None)
        rec_id = rec_id.strip()
        if not rec_id:
            raise FormatError(path, line_no, "empty id")
        if not text.strip():
            raise FormatError(path, line_no, f"empty text for id {rec_id!r}")
        yield line_no, TextRecord(rec_id, text, title if raw_titles else title_or_none(title))


def iter_collection(
    path: str | Path, allow_title: bool = False, raw_titles: bool = False
) -> Iterator[TextRecord]:
    """MS MARCO ``collection.tsv``; a pid that occurs twice is an error naming both lines.
    ``raw_titles`` as in :func:`iter_id_text`."""
    seen: dict[str, int] = {}
    records = iter_id_text_lines(path, allow_title=allow_title, raw_titles=raw_titles)
    for line_no, rec in records:
        if rec.id in seen:
            raise FormatError(
                path, line_no, f"duplicate pid {rec.id!r} (first on line {seen[rec.id]})"
            )
        seen[rec.id] = line_no
        yield rec


def iter_queries(path: str | Path) -> Iterator[TextRecord]:
    """``qid \\t query`` rows; a duplicate qid is an error."""
    seen: dict[str, int] = {}
    for line_no, rec in iter_id_text_lines(path, allow_title=False):
        if rec.id in seen:
            raise FormatError(
                path, line_no, f"duplicate qid {rec.id!r} (first on line {seen[rec.id]})"
            )
        seen[rec.id] = line_no
        yield rec


def write_id_text(
    path: str | Path, records: Iterable[TextRecord], with_title: bool = False
) -> None:
    def line(r: TextRecord) -> str:
        cols = [r.id, _clean(r.text)] + ([_title_out(r.title)] if with_title else [])
        return "\t".join(cols)

    _write_lines(path, (line(r) for r in records))


def read_titles(
    path: str | Path, keep: Collection[str] | None = None, raw: bool = False
) -> dict[str, str | None]:
    """MS MARCO-style titles file ``pid \\t title``; with ``keep``, only those pids' titles
    (a corpus-sized file, read for a few passages). ``raw``: titles verbatim (``-`` and ``''``
    kept, as ``raw_titles`` of :func:`iter_id_text`), else ``-`` / ``''`` read as None."""
    titles: dict[str, str | None] = {}
    for line_no, (pid, title) in _tsv(path, 2, "pid, title"):
        pid = _nonempty(path, line_no, pid.strip(), "pid")
        if keep is None or pid in keep:
            titles[pid] = title if raw else title_or_none(title)
    return titles


def write_titles(path: str | Path, titles: dict[str, str | None]) -> None:
    _write_lines(path, (f"{pid}\t{_clean(_title_out(t))}" for pid, t in titles.items()))


# ----------------------------------------------------------------------------- qrels


def iter_qrels(path: str | Path) -> Iterator[tuple[int, str, str, int]]:
    """(line, qid, pid, relevance) from ``qid \\t 0 \\t pid \\t rel`` or whitespace TREC form,
    or RocketQA's two columns ``qid \\t pid`` (its ``corpus/marco/qrels.*.tsv``: relevance 1)."""
    for line_no, line in _lines(path):
        cols = line.split("\t") if "\t" in line else line.split()
        if len(cols) == 2:  # RocketQA's qrels: every listed pair is relevant
            cols = [cols[0], "0", cols[1], "1"]
        if len(cols) != 4:
            raise FormatError(
                path, line_no, f"expected 'qid 0 pid relevance' (4 columns) or RocketQA's "
                f"'qid<TAB>pid', found {len(cols)}"
            )  # fmt: skip
        qid, _, pid, rel = (c.strip() for c in cols)
        _nonempty(path, line_no, qid, "qid")
        _nonempty(path, line_no, pid, "pid")
        yield line_no, qid, pid, _int(path, line_no, rel, "relevance")


def read_qrels(
    path: str | Path, corpus_ids: Collection[str] | None = None, strict: bool = False
) -> Qrels:
    """qid -> {pid: relevance}. Pids missing from ``corpus_ids`` are an error under ``strict``,
    else one warning with their count (they can never be retrieved)."""
    qrels: Qrels = {}
    unknown, first = 0, ""
    for line_no, qid, pid, rel in iter_qrels(path):
        if corpus_ids is not None and pid not in corpus_ids:
            if strict:
                raise FormatError(path, line_no, f"pid {pid!r} is not in the corpus")
            unknown += 1
            first = first or f"line {line_no}, pid {pid!r}"
        qrels.setdefault(qid, {})[pid] = rel
    if unknown:
        warnings.warn(
            f"{path}: {unknown} qrels name pids not in the corpus (first: {first})", stacklevel=2
        )
    return qrels


def write_qrels(path: str | Path, qrels: Qrels) -> None:
    _write_lines(
        path,
        (f"{qid}\t0\t{pid}\t{rel}" for qid, docs in qrels.items() for pid, rel in docs.items()),
    )


# ----------------------------------------------------------------------------- triples


def iter_triples(path: str | Path) -> Iterator[Triple]:
    for line_no, (q, pos, neg) in _tsv(path, 3, "query, positive, negative"):
        yield Triple(
            _nonempty(path, line_no, q, "query"),
            _nonempty(path, line_no, pos, "positive passage"),
            _nonempty(path, line_no, neg, "negative passage"),
        )


def write_triples(path: str | Path, triples: Iterable[Triple]) -> None:
    _write_lines(
        path, (f"{_clean(t.query)}\t{_clean(t.positive)}\t{_clean(t.negative)}" for t in triples)
    )


# ----------------------------------------------------------------------------- DPR / NQ

DPR_PSGS_HEADER = ("id", "text", "title")


def iter_dpr_passages(path: str | Path) -> Iterator[TextRecord]:
    """DPR ``psgs_w100.tsv``: header ``id \\t text \\t title``, then one passage a line."""
    for line_no, line in _lines(path):
        cols = line.split("\t")
        if line_no == 1:
            if tuple(c.strip() for c in cols) != DPR_PSGS_HEADER:
                raise FormatError(
                    path, 1, f"expected the header 'id<TAB>text<TAB>title', found {line[:60]!r}"
                )
            continue
        if len(cols) != 3:
            raise FormatError(
                path,
                line_no,
                f"expected 3 tab-separated columns (id, text, title), found {len(cols)}",
            )
        pid, text, title = cols
        _nonempty(path, line_no, pid, "id")
        # DPR writes texts with embedded quotes as CSV-quoted fields.
        if len(text) >= 2 and text[0] == text[-1] == '"':
            text = text[1:-1].replace('""', '"')
        yield TextRecord(
            pid.strip(),
            _nonempty(path, line_no, text, f"text for id {pid!r}"),
            title_or_none(title),
        )


def write_dpr_passages(path: str | Path, records: Iterable[TextRecord]) -> None:
    header = "\t".join(DPR_PSGS_HEADER)
    rows = (f"{r.id}\t{_clean(r.text)}\t{_clean(r.title or '')}" for r in records)
    _write_lines(path, (header, *rows))


def _iter_json_array(
    path: str | Path, chunk_chars: int = 1 << 20, max_element_chars: int = 1 << 26
) -> Iterator[tuple[int, Any]]:
    """Streams the elements of a top-level JSON array: (line where the element starts, value).

    nq-train.json is several GB: it is decoded one element at a time, never whole.
    """
    decoder = json.JSONDecoder()
    with _open(path) as f:
        buf, pos, line = "", 0, 1

        def fill() -> bool:
            nonlocal buf, pos
            more = f.read(chunk_chars)
            buf = buf[pos:] + more
            pos = 0
            return bool(more)

        def skip_ws() -> bool:
            """Advances past whitespace (counting lines); False at end of file."""
            nonlocal pos, line
            while True:
                while pos < len(buf) and buf[pos] in " \t\r\n":
                    line += buf[pos] == "\n"
                    pos += 1
                if pos < len(buf):
                    return True
                if not fill():
                    return False

        try:
            if not skip_ws() or buf[pos] != "[":
                raise FormatError(path, line, "expected a JSON list of examples ('[' at the start)")
            pos += 1
            while True:
                if not skip_ws():
                    raise FormatError(path, line, "unexpected end of file inside the JSON list")
                if buf[pos] == "]":
                    return
                if buf[pos] == ",":
                    pos += 1
                    continue
                start_line = line
                while True:
                    try:
                        value, end = decoder.raw_decode(buf, pos)
                        break
                    except json.JSONDecodeError as e:
                        err_line, msg = start_line + buf.count("\n", pos, e.pos), e.msg
                        # An element is small: past max_element_chars the error is real.
                        if len(buf) - pos > max_element_chars or not fill():
                            raise FormatError(path, err_line, f"bad JSON: {msg}") from None
                line += buf.count("\n", pos, end)
                pos = end
                yield start_line, value
        except UnicodeDecodeError as e:
            raise FormatError(path, line, f"not valid UTF-8 ({e.reason})") from None


def _context(path: str | Path, line_no: int, ctx: Any) -> Context:
    if not isinstance(ctx, dict) or "text" not in ctx:
        raise FormatError(
            path, line_no, f"a context must be an object with 'text', found {str(ctx)[:60]!r}"
        )
    pid = ctx.get("passage_id", ctx.get("psg_id", ""))
    return Context(title_or_none(ctx.get("title")), ctx["text"], str(pid))


def iter_dpr_examples(path: str | Path) -> Iterator[DprExample]:
    """DPR ``nq-{train,dev}.json``: {question, answers, positive_ctxs, negative_ctxs,
    hard_negative_ctxs}; each context {title, text, passage_id | psg_id}."""
    for line_no, obj in _iter_json_array(path):
        if not isinstance(obj, dict) or not isinstance(obj.get("question"), str):
            raise FormatError(
                path, line_no, "each example must be an object with a 'question' string"
            )
        answers = obj.get("answers", [])
        if not isinstance(answers, list):
            raise FormatError(path, line_no, "'answers' must be a list")

        def ctxs(key: str, obj=obj, line_no=line_no) -> tuple[Context, ...]:
            return tuple(_context(path, line_no, c) for c in obj.get(key) or [])

        yield DprExample(
            obj["question"],
            tuple(str(a) for a in answers),
            ctxs("positive_ctxs"),
            ctxs("negative_ctxs"),
            ctxs("hard_negative_ctxs"),
        )


def write_dpr_examples(path: str | Path, examples: Iterable[DprExample]) -> None:
    def ctx(c: Context) -> dict[str, Any]:
        return {"title": c.title or "", "text": c.text, "passage_id": c.passage_id}

    objs = (
        json.dumps(
            {
                "question": e.question,
                "answers": list(e.answers),
                "positive_ctxs": [ctx(c) for c in e.positive_ctxs],
                "negative_ctxs": [ctx(c) for c in e.negative_ctxs],
                "hard_negative_ctxs": [ctx(c) for c in e.hard_negative_ctxs],
            },
            ensure_ascii=False,
        )
        for e in examples
    )
    body = ",\n".join(objs)
    _write_lines(path, [f"[\n{body}\n]" if body else "[]"])


def iter_qa_pairs(path: str | Path) -> Iterator[QaPair]:
    """DPR ``nq-test.qa.csv``: ``question \\t ["answer", ...]`` (a JSON list of strings)."""
    for line_no, (question, answers) in _tsv(path, 2, "question, JSON list of answers"):
        try:
            parsed = json.loads(answers)
        except json.JSONDecodeError as e:
            raise FormatError(path, line_no, f"answers are not valid JSON ({e.msg})") from None
        if not isinstance(parsed, list) or not all(isinstance(a, str) for a in parsed):
            raise FormatError(path, line_no, "answers must be a JSON list of strings")
        yield QaPair(_nonempty(path, line_no, question, "question"), tuple(parsed))


def write_qa_pairs(path: str | Path, pairs: Iterable[QaPair]) -> None:
    _write_lines(
        path,
        (f"{_clean(p.question)}\t{json.dumps(list(p.answers), ensure_ascii=False)}" for p in pairs),
    )


# ----------------------------------------------------------------------------- RocketQA TSVs


def iter_dual_train(path: str | Path) -> Iterator[DualTrainRow]:
    """``query \\t pos_title \\t pos_para \\t neg_title \\t neg_para \\t 0``."""
    layout = "query, pos_title, pos_para, neg_title, neg_para, 0"
    for line_no, (q, pt, pp, nt, np_, label) in _tsv(path, 6, layout):
        _int(path, line_no, label, "the last column")
        yield DualTrainRow(
            _nonempty(path, line_no, q, "query"),
            title_or_none(pt),
            _nonempty(path, line_no, pp, "positive passage"),
            title_or_none(nt),
            _nonempty(path, line_no, np_, "negative passage"),
        )


def write_dual_train(path: str | Path, rows: Iterable[DualTrainRow]) -> None:
    def line(r: DualTrainRow) -> str:
        cols = [r.query, _title_out(r.pos_title), r.pos_para, _title_out(r.neg_title), r.neg_para]
        return "\t".join(map(_clean, cols)) + "\t0"

    _write_lines(path, map(line, rows))


def _labelled(path: str | Path, line_no: int, cols: list[str]) -> CrossTrainRow:
    q, title, para, label = cols
    value = _int(path, line_no, label, "label")
    if value not in (0, 1):
        raise FormatError(path, line_no, f"label must be 0 or 1, found {value}")
    return CrossTrainRow(
        _nonempty(path, line_no, q, "query"),
        title_or_none(title),
        _nonempty(path, line_no, para, "passage"),
        value,
    )


def iter_cross_train(path: str | Path) -> Iterator[CrossTrainRow]:
    """``query \\t title \\t para \\t label`` with label 1 (relevant) or 0."""
    for line_no, cols in _tsv(path, 4, "query, title, para, label"):
        yield _labelled(path, line_no, cols)


def write_cross_train(path: str | Path, rows: Iterable[CrossTrainRow]) -> None:
    _write_lines(
        path,
        (
            "\t".join([*map(_clean, [r.query, _title_out(r.title), r.para]), str(r.label)])
            for r in rows
        ),
    )


EXTRA_POSITIVES = ("error", "first", "skip")


def iter_joint_lists(
    path: str | Path, list_size: int, extra_positives: str = "error"
) -> Iterator[JointList]:
    """RocketQAv2 lists: blocks of ``list_size`` cross-encoder lines for one query, the
    positive (label 1) first and every other label 0. A wrong block is an error naming it.

    A block with further positives after the first (denoised lists can hold several) is an
    error with ``extra_positives="error"``; ``"first"`` keeps it with only the first as the
    positive (the listwise loss takes index 0), ``"skip"`` drops it (counted in a warning)."""
    if list_size < 2:
        raise UserInputError(f"list_size must be at least 2, got {list_size}")
    if extra_positives not in EXTRA_POSITIVES:
        raise UserInputError(
            f"extra_positives must be one of {EXTRA_POSITIVES}, got {extra_positives!r}"
        )
    block: list[tuple[int, CrossTrainRow]] = []
    skipped = [0]

    def finish() -> JointList | None:
        first_line, first = block[0]
        for line_no, row in block:
            if row.query != first.query:
                raise FormatError(
                    path, line_no, f"query differs from the block's first line {first_line}: "
                    f"blocks of {list_size} lines must share one query (is list_size right?)"
                )  # fmt: skip
        labels = tuple(r.label for _, r in block)
        if labels[0] != 1 or (any(labels[1:]) and extra_positives == "error"):
            raise FormatError(
                path, first_line, f"a block must have its positive (label 1) first and only there, "
                f"found labels {list(labels)} (extra_positives='first' or 'skip' accept further positives)"
            )  # fmt: skip
        if any(labels[1:]):
            if extra_positives == "skip":
                skipped[0] += 1
                return None
            labels = (1,) + (0,) * (len(labels) - 1)
        return JointList(
            first.query, tuple(r.title for _, r in block), tuple(r.para for _, r in block), labels
        )

    last_line = 0
    for line_no, cols in _tsv(path, 4, "query, title, para, label"):
        last_line = line_no
        block.append((line_no, _labelled(path, line_no, cols)))
        if len(block) == list_size:
            done = finish()
            if done is not None:
                yield done
            block = []
    if block:
        raise FormatError(
            path,
            last_line,
            f"the last block has {len(block)} lines, expected list_size={list_size}",
        )
    if skipped[0]:
        warnings.warn(
            f"{path}: skipped {skipped[0]} lists with more than one positive", stacklevel=2
        )


def write_joint_lists(path: str | Path, lists: Iterable[JointList]) -> None:
    rows = (
        CrossTrainRow(jl.query, t, p, label)
        for jl in lists
        for t, p, label in zip(jl.titles, jl.paras, jl.labels, strict=True)
    )
    write_cross_train(path, rows)


# ----------------------------------------------------------------------------- runs


def _run_line(path: str | Path, line_no: int, line: str) -> tuple[str, str, int, float]:
    """One TREC (``qid Q0 pid rank score tag``) or RocketQA (``qid pid rank score``) run line
    → (qid, pid, rank, score); a NaN score (what a broken search writes for padding rows)
    is an error."""
    cols = line.split()
    if len(cols) == 6:
        qid, _, pid, rank, score, _ = cols
    elif len(cols) == 4:
        qid, pid, rank, score = cols
    else:
        raise FormatError(
            path, line_no, f"expected a TREC run line 'qid Q0 pid rank score tag' or "
            f"'qid<TAB>pid<TAB>rank<TAB>score', found {len(cols)} columns"
        )  # fmt: skip
    try:
        score_f = float(score)
    except ValueError:
        raise FormatError(path, line_no, f"score must be a number, found {score!r}") from None
    if math.isnan(score_f):
        raise FormatError(path, line_no, f"score of passage {pid!r} is NaN")
    return qid, pid, _int(path, line_no, rank, "rank"), score_f


def read_run(path: str | Path) -> Run:
    """A TREC run (``qid Q0 pid rank score tag``) or RocketQA's (``qid \\t pid \\t rank \\t score``),
    detected per line; each query's list is sorted by rank. A passage listed twice for one
    query, or a NaN score, is refused: downstream top-k lists and negative pools assume k
    distinct, really retrieved passages."""
    ranked: dict[str, list[tuple[int, str, float]]] = {}
    first_seen: dict[tuple[str, str], int] = {}
    for line_no, line in _lines(path):
        qid, pid, rank, score_f = _run_line(path, line_no, line)
        if (qid, pid) in first_seen:
            raise FormatError(path, line_no, f"passage {pid!r} is listed twice for query {qid!r} "
                              f"(first on line {first_seen[qid, pid]})")  # fmt: skip
        first_seen[qid, pid] = line_no
        ranked.setdefault(qid, []).append((rank, pid, score_f))
    return {
        q: [(pid, s) for _, pid, s in sorted(rows, key=lambda r: r[0])]
        for q, rows in ranked.items()
    }


def iter_run_groups(
    path: str | Path, depth: int | None = None
) -> Iterator[tuple[str, list[tuple[str, float]]]]:
    """A run streamed one query at a time, for runs too large to hold (MS MARCO train
    top-1000: 500M lines): (qid, [(pid, score)] sorted by rank, the first ``depth``).
    Each query's lines must be contiguous, as searches write them; a query met again after
    another, a passage listed twice for a query and a NaN score are errors naming the line."""
    done: set[str] = set()
    qid_now, rows, pids = "", [], {}

    def finish() -> tuple[str, list[tuple[str, float]]]:
        ranked = [(pid, s) for _, pid, s in sorted(rows, key=lambda r: r[0])]
        return qid_now, ranked[:depth] if depth is not None else ranked

    for line_no, line in _lines(path):
        qid, pid, rank, score_f = _run_line(path, line_no, line)
        if qid != qid_now:
            if rows:
                yield finish()
                done.add(qid_now)
            if qid in done:
                raise FormatError(path, line_no, f"query {qid!r} appears again after other "
                                  "queries: a streamed run needs each query's lines together "
                                  "(sort the run by query)")  # fmt: skip
            qid_now, rows, pids = qid, [], {}
        if pid in pids:
            raise FormatError(path, line_no, f"passage {pid!r} is listed twice for query {qid!r} "
                              f"(first on line {pids[pid]})")  # fmt: skip
        pids[pid] = line_no
        rows.append((rank, pid, score_f))
    if rows:
        yield finish()


def write_run(path: str | Path, run: Run, fmt: str = "trec", tag: str = "rqa_jax") -> None:
    """``fmt`` "trec" or "rocketqa"; ranks are 1-based in list order."""
    if fmt not in ("trec", "rocketqa"):
        raise UserInputError(f"run format must be 'trec' or 'rocketqa', got {fmt!r}")

    def lines() -> Iterator[str]:
        for qid, docs in run.items():
            for rank, (pid, score) in enumerate(docs, start=1):
                if fmt == "trec":
                    yield f"{qid} Q0 {pid} {rank} {score:.6f} {tag}"
                else:
                    yield f"{qid}\t{pid}\t{rank}\t{score:.6f}"

    _write_lines(path, lines())


# ----------------------------------------------------------------------------- MS MARCO file names

# What each MS MARCO-form file may be called in a data dir, first found wins: this library's
# names (the sample's), then the official MS MARCO downloads' (collectionandqueries.tar.gz,
# triples.train.small.tar.gz), then RocketQA's own package (``corpus/marco/`` of the released
# ``wget_data.sh``: para.txt, para.title.txt, {train,dev}.query.txt, qrels.{train,dev}.tsv with
# two columns, read by :func:`iter_qrels`). Same columns under every name.
MARCO_FILES: dict[str, tuple[str, ...]] = {
    "collection": ("collection.tsv", "para.txt"),  # pid \t passage
    "titles": ("titles.tsv", "para.title.txt"),  # pid \t title
    "queries.train": ("queries.train.tsv", "train.query.txt"),  # qid \t query
    "queries.dev": ("queries.dev.tsv", "queries.dev.small.tsv", "dev.query.txt"),
    "qrels.train": ("qrels.train.tsv",),  # qid 0 pid rel, or RocketQA's qid \t pid
    "qrels.dev": ("qrels.dev.tsv", "qrels.dev.small.tsv"),
    "triples.train": ("triples.train.tsv", "triples.train.small.tsv"),  # query \t pos \t neg
    # RocketQA: further train positives found by literal matching, never sampled as negatives
    "qrels.train.addition": ("qrels.train.addition.tsv",),
}


def marco_file(root: str | Path, name: str, why: str = "", required: bool = True) -> Path | None:
    """The file of ``root`` that holds MS MARCO's ``name`` (a :data:`MARCO_FILES` key): the
    first of its names that exists. None if there is none and not ``required``; else
    UserFileNotFoundError listing every name looked for (and ``why`` it is needed)."""
    if name not in MARCO_FILES:
        raise ValueError(f"unknown MS MARCO file {name!r}: one of {sorted(MARCO_FILES)}")
    root = Path(root)
    for candidate in MARCO_FILES[name]:
        if (root / candidate).is_file():
            return root / candidate
    if not required:
        return None
    names = " or ".join(MARCO_FILES[name])
    raise UserFileNotFoundError(f"{root} has no {name} file (looked for {names})"
                            + (f": {why}" if why else ""))  # fmt: skip


def marco_dev_files(root: str | Path, why: str = "") -> tuple[Path, Path]:
    """(dev queries, dev qrels) of ``root``, as :func:`marco_file` finds them, except that
    the official small pair goes together: with ``qrels.dev.small.tsv`` (and no
    ``qrels.dev.tsv``) the queries are ``queries.dev.small.tsv`` when there is one, not the
    101k-query ``queries.dev.tsv`` that the same downloads hold."""
    qrels = marco_file(root, "qrels.dev", why)
    small = Path(root) / "queries.dev.small.tsv"
    if qrels.name == "qrels.dev.small.tsv" and small.is_file():
        return small, qrels
    return marco_file(root, "queries.dev", why), qrels
