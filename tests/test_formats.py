"""Every format: write -> read gives the same records; every bad line is a clear file:line error."""

import json

import pytest

from rqa_jax.data import formats as F


def test_collection_queries_titles_round_trip(tmp_path):
    recs = [F.TextRecord("1", "first passage"), F.TextRecord("2", "second, with ünïcode")]
    F.write_id_text(tmp_path / "c.tsv", recs)
    assert list(F.iter_collection(tmp_path / "c.tsv")) == recs
    assert list(F.iter_queries(tmp_path / "c.tsv")) == recs
    titled = [F.TextRecord("1", "text", "A title"), F.TextRecord("2", "text two", None)]
    F.write_id_text(tmp_path / "t.tsv", titled, with_title=True)
    assert list(F.iter_collection(tmp_path / "t.tsv", allow_title=True)) == titled
    F.write_titles(tmp_path / "titles.tsv", {"1": "A title", "2": None})
    assert F.read_titles(tmp_path / "titles.tsv") == {"1": "A title", "2": None}


def test_id_title_text_order(tmp_path):
    (tmp_path / "p.tsv").write_text("7\tSome title\tthe text\n8\t-\tmore text\n")
    got = list(F.iter_id_text(tmp_path / "p.tsv", fmt="id_title_text"))
    assert got == [F.TextRecord("7", "the text", "Some title"), F.TextRecord("8", "more text")]


def test_qrels_round_trip_and_trec_whitespace_form(tmp_path):
    qrels = {"q1": {"p1": 1, "p2": 2}, "q2": {"p3": 1}}
    F.write_qrels(tmp_path / "q.tsv", qrels)
    assert F.read_qrels(tmp_path / "q.tsv") == qrels
    (tmp_path / "trec.txt").write_text("q1 0 p1 1\nq1 0 p2 2\nq2  0  p3 1\n")
    assert F.read_qrels(tmp_path / "trec.txt") == qrels


def test_triples_round_trip(tmp_path):
    triples = [F.Triple("q one", "pos one", "neg one"), F.Triple("q two", "pos", "neg")]
    F.write_triples(tmp_path / "tr.tsv", triples)
    assert list(F.iter_triples(tmp_path / "tr.tsv")) == triples


def test_dpr_passages_round_trip(tmp_path):
    recs = [F.TextRecord("1", "Aaron is a prophet.", "Aaron"), F.TextRecord("2", "No title here.")]
    F.write_dpr_passages(tmp_path / "psgs.tsv", recs)
    assert (tmp_path / "psgs.tsv").read_text().startswith("id\ttext\ttitle\n")
    assert list(F.iter_dpr_passages(tmp_path / "psgs.tsv")) == recs
    (tmp_path / "q.tsv").write_text('id\ttext\ttitle\n3\t"He said ""hi"" there"\tT\n')
    assert next(F.iter_dpr_passages(tmp_path / "q.tsv")).text == 'He said "hi" there'


def test_dpr_json_round_trip_streams_in_small_chunks(tmp_path):
    ex = [
        F.DprExample(
            "who sang it",
            ("Ann", "Anne B"),
            (F.Context("Song", "Ann sang it.", "11"),),
            (F.Context(None, "unrelated", "12"),),
            (F.Context("Other", "Bob sang another.", "13"), F.Context("X", "y", "14")),
        ),
        F.DprExample("second?", (), (F.Context("T", "text", "5"),)),
    ]
    F.write_dpr_examples(tmp_path / "nq.json", ex)
    assert list(F.iter_dpr_examples(tmp_path / "nq.json")) == ex
    # chunk boundaries inside elements are handled (the real files are GBs)
    got = [e for _, e in F._iter_json_array(tmp_path / "nq.json", chunk_chars=7)]
    assert len(got) == 2 and got[1]["question"] == "second?"


def test_dpr_json_psg_id_key(tmp_path):
    obj = [
        {
            "question": "q",
            "answers": ["a"],
            "positive_ctxs": [{"title": "t", "text": "x", "psg_id": 9}],
        }
    ]
    (tmp_path / "nq.json").write_text(json.dumps(obj))
    assert next(F.iter_dpr_examples(tmp_path / "nq.json")).positive_ctxs[0].passage_id == "9"


def test_qa_csv_round_trip(tmp_path):
    pairs = [F.QaPair("who is he", ("Bob", 'the "boss"')), F.QaPair("when", ("1999",))]
    F.write_qa_pairs(tmp_path / "qa.csv", pairs)
    assert list(F.iter_qa_pairs(tmp_path / "qa.csv")) == pairs


def test_rocketqa_training_tsvs_round_trip(tmp_path):
    dual = [
        F.DualTrainRow("q", "pt", "pos para", None, "neg para"),
        F.DualTrainRow("q2", None, "p", "nt", "n"),
    ]
    F.write_dual_train(tmp_path / "de.tsv", dual)
    assert (tmp_path / "de.tsv").read_text().splitlines()[0] == "q\tpt\tpos para\t-\tneg para\t0"
    assert list(F.iter_dual_train(tmp_path / "de.tsv")) == dual
    cross = [F.CrossTrainRow("q", "t", "p", 1), F.CrossTrainRow("q", None, "p2", 0)]
    F.write_cross_train(tmp_path / "ce.tsv", cross)
    assert list(F.iter_cross_train(tmp_path / "ce.tsv")) == cross
    lists = [
        F.JointList("q1", ("t", None, "u"), ("pos", "n1", "n2"), (1, 0, 0)),
        F.JointList("q2", (None, None, None), ("p", "m1", "m2"), (1, 0, 0)),
    ]
    F.write_joint_lists(tmp_path / "v2.tsv", lists)
    assert list(F.iter_joint_lists(tmp_path / "v2.tsv", 3)) == lists


def test_runs_round_trip_in_both_forms(tmp_path):
    run = {"q1": [("p3", 9.5), ("p1", 2.25)], "q2": [("p7", 0.5)]}
    for fmt in ("trec", "rocketqa"):
        F.write_run(tmp_path / f"{fmt}.run", run, fmt=fmt)
        assert F.read_run(tmp_path / f"{fmt}.run") == run
    assert (tmp_path / "trec.run").read_text().splitlines()[0] == "q1 Q0 p3 1 9.500000 rqa_jax"


# ---------------------------------------------------------------- errors name file:line


def err(tmp_path, name, content, fn, match, **kw):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(F.FormatError, match=match) as e:
        result = fn(path, **kw)
        list(result) if not isinstance(result, dict) else None
    assert str(e.value).startswith(f"{path}:")
    return e.value


def test_missing_column(tmp_path):
    e = err(
        tmp_path,
        "de.tsv",
        "q\tt\tp\t-\tn\t0\nq\tt\tp\t-\tn\n",
        F.iter_dual_train,
        "expected 6 tab-separated columns",
    )
    assert e.line_no == 2
    err(tmp_path, "c.tsv", "1\ttext\n2 no tab\n", F.iter_collection, r":2: expected 'id<TAB>text'")


def test_extra_column(tmp_path):
    err(
        tmp_path,
        "ce.tsv",
        "q\tt\tp\t1\textra\n",
        F.iter_cross_train,
        r":1: expected 4 tab-separated columns .* found 5",
    )
    err(tmp_path, "tr.tsv", "a\tb\tc\td\n", F.iter_triples, r":1: expected 3")


def test_non_integer_relevance_and_label(tmp_path):
    err(
        tmp_path,
        "q.tsv",
        "q1\t0\tp1\t1\nq1\t0\tp2\tyes\n",
        F.read_qrels,
        r":2: relevance must be an integer, found 'yes'",
    )
    err(tmp_path, "ce.tsv", "q\tt\tp\t0.5\n", F.iter_cross_train, r":1: label must be an integer")
    err(tmp_path, "ce2.tsv", "q\tt\tp\t3\n", F.iter_cross_train, r":1: label must be 0 or 1")


def test_duplicate_pid(tmp_path):
    err(
        tmp_path,
        "c.tsv",
        "1\ta\n2\tb\n1\tc\n",
        F.iter_collection,
        r":3: duplicate pid '1' \(first on line 1\)",
    )


def test_qrels_pid_not_in_corpus_warns_with_count_or_fails_strict(tmp_path):
    path = tmp_path / "q.tsv"
    path.write_text("q1\t0\tp1\t1\nq2\t0\tp9\t1\nq3\t0\tp8\t1\n")
    with pytest.warns(
        UserWarning, match=r"2 qrels name pids not in the corpus \(first: line 2, pid 'p9'\)"
    ):
        qrels = F.read_qrels(path, corpus_ids={"p1"})
    assert qrels == {"q1": {"p1": 1}, "q2": {"p9": 1}, "q3": {"p8": 1}}  # nothing dropped silently
    with pytest.raises(F.FormatError, match=r"q.tsv:2: pid 'p9' is not in the corpus"):
        F.read_qrels(path, corpus_ids={"p1"}, strict=True)


def test_bad_json(tmp_path):
    good = {"question": "q", "answers": [], "positive_ctxs": []}
    content = "[\n" + json.dumps(good) + ",\n" + '{"question": "q2", "answers": [}\n' + "]\n"
    e = err(tmp_path, "nq.json", content, F.iter_dpr_examples, "bad JSON")
    assert e.line_no == 3
    err(
        tmp_path,
        "qa.csv",
        'who\t["a"\nwhat\tnot json\n',
        F.iter_qa_pairs,
        r":1: answers are not valid JSON",
    )
    err(tmp_path, "obj.json", '{"question": "q"}', F.iter_dpr_examples, r":1: expected a JSON list")


def test_v2_block_of_wrong_size_or_positive(tmp_path):
    lines = "q\tt\tpos\t1\nq\tt\tn\t0\nq\tt\tn\t0\nr\tt\tpos\t1\nr\tt\tn\t0\n"
    err(
        tmp_path,
        "v2.tsv",
        lines,
        F.iter_joint_lists,
        r":5: the last block has 2 lines, expected list_size=3",
        list_size=3,
    )
    err(tmp_path, "v2b.tsv", lines, F.iter_joint_lists, r":4: query differs", list_size=2)
    err(
        tmp_path,
        "v2c.tsv",
        "q\tt\tn\t0\nq\tt\tpos\t1\n",
        F.iter_joint_lists,
        r":1: a block must have its positive",
        list_size=2,
    )


def test_empty_text_and_bad_utf8(tmp_path):
    err(tmp_path, "q.tsv", "q1\t \n", F.iter_queries, r":1: empty text for id 'q1'")
    path = tmp_path / "bin.tsv"
    path.write_bytes(b"1\tok\n2\t\xff\xfe bad\n")
    with pytest.raises(F.FormatError, match=r"bin.tsv:2: not valid UTF-8"):
        list(F.iter_collection(path))


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list(F.iter_collection(tmp_path / "nope.tsv"))


def test_run_with_a_repeated_passage_or_nan_score_is_refused(tmp_path):
    """What the old ScaNN search wrote past rank 100: row 0 again and again, score NaN."""
    e = err(tmp_path, "dup.run", "q1 Q0 p1 1 2.0 t\nq1 Q0 p2 2 1.0 t\nq1 Q0 p1 3 0.5 t\n",
            F.read_run, "passage 'p1' is listed twice for query 'q1' \\(first on line 1\\)")  # fmt: skip
    assert e.line_no == 3
    err(tmp_path, "nan.run", "q1\tp1\t1\t2.0\nq1\tp2\t2\tnan\n", F.read_run, "NaN")
    assert F.read_run(_write(tmp_path / "ok.run", "q1 Q0 p1 1 2 t\nq2 Q0 p1 1 3 t\n")) == {
        "q1": [("p1", 2.0)], "q2": [("p1", 3.0)]}  # fmt: skip


def _write(path, text):
    path.write_text(text)
    return path


def test_run_streamed_one_query_at_a_time(tmp_path):
    path = _write(
        tmp_path / "r.run", "q1 Q0 p2 2 1.0 t\nq1 Q0 p1 1 2.0 t\nq1 Q0 p3 3 0.5 t\nq2\tp1\t1\t3.0\n"
    )
    assert list(F.iter_run_groups(path)) == [
        ("q1", [("p1", 2.0), ("p2", 1.0), ("p3", 0.5)]), ("q2", [("p1", 3.0)])]  # fmt: skip
    assert next(r for _, r in F.iter_run_groups(path, depth=2)) == [("p1", 2.0), ("p2", 1.0)]
    e = err(tmp_path, "split.run", "q1 Q0 p1 1 2 t\nq2 Q0 p1 1 2 t\nq1 Q0 p2 2 1 t\n",
            F.iter_run_groups, "query 'q1' appears again after other queries")  # fmt: skip
    assert e.line_no == 3
    err(tmp_path, "dup2.run", "q1 Q0 p1 1 2 t\nq1 Q0 p1 2 1 t\n", F.iter_run_groups,
        "passage 'p1' is listed twice for query 'q1'")  # fmt: skip
