"""Readers for the text files users bring, streaming, with errors that name file:line.

So far: the id/text TSVs that ``rqa encode`` takes — ``id \\t text`` (MS MARCO collection and
queries), optionally with a title column (``id \\t text \\t title`` or, DPR's column order,
``id \\t title \\t text``). A title ``-`` or empty means no title.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

ID_TEXT_FORMATS = ("id_text_title", "id_title_text")


class FormatError(ValueError):
    """A line of an input file is not in the expected format; the message names file:line."""

    def __init__(self, path: str | Path, line_no: int, message: str) -> None:
        super().__init__(f"{path}:{line_no}: {message}")
        self.path, self.line_no = str(path), line_no


@dataclasses.dataclass(frozen=True)
class TextRecord:
    id: str
    text: str
    title: str | None = None


def _open_text(path: str | Path):
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"input file {str(path)!r} does not exist")
    return path.open("r", encoding="utf-8", newline="\n")


def iter_id_text(
    path: str | Path, allow_title: bool = True, fmt: str = "id_text_title"
) -> Iterator[TextRecord]:
    """Streams records of an ``id \\t text [\\t title]`` TSV, validating every line."""
    if fmt not in ID_TEXT_FORMATS:
        raise ValueError(f"format must be one of {ID_TEXT_FORMATS}, got {fmt!r}")
    expected = (
        "'id<TAB>text'"
        if not allow_title
        else ("'id<TAB>text[<TAB>title]'" if fmt == "id_text_title" else "'id<TAB>title<TAB>text'")
    )
    max_cols = 3 if allow_title else 2
    with _open_text(path) as f:
        line_no = 0
        try:
            for line_no, line in enumerate(f, start=1):
                line = line.rstrip("\r\n")
                cols = line.split("\t")
                if len(cols) < 2 or len(cols) > max_cols:
                    raise FormatError(
                        path,
                        line_no,
                        f"expected {expected}, found {len(cols)} tab-separated column(s)",
                    )
                if fmt == "id_title_text" and allow_title:
                    if len(cols) != 3:
                        raise FormatError(path, line_no, f"expected {expected}, found 2 columns")
                    rec_id, title, text = cols
                else:
                    rec_id, text = cols[0], cols[1]
                    title = cols[2] if len(cols) == 3 else None
                rec_id = rec_id.strip()
                if not rec_id:
                    raise FormatError(path, line_no, "empty id")
                if not text.strip():
                    raise FormatError(path, line_no, f"empty text for id {rec_id!r}")
                yield TextRecord(rec_id, text, title)
        except UnicodeDecodeError as e:
            raise FormatError(path, line_no + 1, f"not valid UTF-8 ({e.reason})") from None
