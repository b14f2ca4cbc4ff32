"""Encodings checked against ids written by hand from the tiny vocab in conftest:
[PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 what=5 is=6 a=7 dog=8 cat=9 the=10 title=11 para=12 big=13
small=14 ##s=15."""

import numpy as np
import pytest

from rqa_jax.data import tokenize


def rows(enc):
    return enc.input_ids.tolist(), enc.token_type_ids.tolist(), enc.attention_mask.tolist()


def test_query_encoding_is_cls_text_sep_segment_zero(tiny_tokenizer):
    enc = tokenize.encode_queries(tiny_tokenizer, ["what is a dog", "cat"], max_len=8)
    assert enc.input_ids.dtype == np.int32 and enc.input_ids.shape == (2, 8)
    assert rows(enc) == (
        [[2, 5, 6, 7, 8, 3, 0, 0], [2, 9, 3, 0, 0, 0, 0, 0]],
        [[0] * 8, [0] * 8],
        [[1, 1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 0, 0, 0, 0, 0]],
    )


def test_query_truncated_to_max_len_keeps_final_sep(tiny_tokenizer):
    enc = tokenize.encode_queries(tiny_tokenizer, ["what is a big small dog"], max_len=5)
    assert enc.input_ids.tolist() == [[2, 5, 6, 7, 3]]


def test_passage_with_title_is_a_segment_pair(tiny_tokenizer):
    enc = tokenize.encode_passages(tiny_tokenizer, ["a big dog"], ["the title"], max_len=10)
    assert rows(enc) == (
        [[2, 10, 11, 3, 7, 13, 8, 3, 0, 0]],
        [[0, 0, 0, 0, 1, 1, 1, 1, 0, 0]],
        [[1, 1, 1, 1, 1, 1, 1, 1, 0, 0]],
    )


@pytest.mark.parametrize("title", [None, "-", "", "  "])
def test_passage_without_title_encodes_as_single_text(tiny_tokenizer, title):
    enc = tokenize.encode_passages(tiny_tokenizer, ["a cat"], [title], max_len=6)
    assert rows(enc) == ([[2, 7, 9, 3, 0, 0]], [[0] * 6], [[1, 1, 1, 1, 0, 0]])


def test_passage_without_title_rocketqa_form(tiny_tokenizer):
    enc = tokenize.encode_passages(tiny_tokenizer, ["a cat"], ["-"], 7, title_form="rocketqa")
    assert rows(enc) == ([[2, 3, 7, 9, 3, 0, 0]], [[0, 0, 1, 1, 1, 0, 0]], [[1] * 5 + [0, 0]])


def test_mixed_titles_keep_row_order(tiny_tokenizer):
    enc = tokenize.encode_passages(tiny_tokenizer, ["dog", "cat", "para"], ["title", "-", "big"], 6)
    assert enc.input_ids.tolist() == [[2, 11, 3, 8, 3, 0], [2, 9, 3, 0, 0, 0], [2, 13, 3, 12, 3, 0]]


def test_passage_truncation_removes_from_the_longer_side(tiny_tokenizer):
    # title 5 tokens, para 2 tokens, room for 5: the title is cut to 3 (never the short para).
    enc = tokenize.encode_passages(
        tiny_tokenizer, ["a dog"], ["the big small cat title"], max_len=8
    )
    assert enc.input_ids.tolist() == [[2, 10, 13, 14, 3, 7, 8, 3]]
    # both long: the longer is cut to the shorter's length, then the second side goes first
    # on ties (BERT's / RocketQA's _truncate_seq_pair): 3 + 5 tokens into 5 -> 3 + 2.
    enc = tokenize.encode_passages(
        tiny_tokenizer, ["a big small dog cat"], ["the title para"], max_len=8
    )
    assert enc.input_ids.tolist() == [[2, 10, 11, 12, 3, 7, 13, 3]]
    assert enc.token_type_ids.tolist() == [[0, 0, 0, 0, 0, 1, 1, 1]]


def test_truncated_pair_lengths_equals_the_reference_loop():
    def loop(a, b, budget):  # RocketQA's reader, verbatim in behaviour
        while a + b > budget:
            if a > b:
                a -= 1
            else:
                b -= 1
        return a, b

    for a in range(12):
        for b in range(12):
            for budget in range(1, 14):
                assert tokenize.truncated_pair_lengths(a, b, budget) == loop(a, b, budget)


def test_pair_encoding_joins_title_and_para(tiny_tokenizer):
    enc = tokenize.encode_pairs(tiny_tokenizer, ["what is a dog"], ["a big dog"], ["title"], 12)
    assert rows(enc) == (
        [[2, 5, 6, 7, 8, 3, 11, 7, 13, 8, 3, 0]],
        [[0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 0]],
        [[1] * 11 + [0]],
    )


def test_pair_encoding_without_title_and_truncation_of_longer_side(tiny_tokenizer):
    enc = tokenize.encode_pairs(tiny_tokenizer, ["cat"], ["a big small dog the cat"], ["-"], 8)
    assert enc.input_ids.tolist() == [[2, 9, 3, 7, 13, 14, 8, 3]]


def test_pair_encoding_query_cut_first(tiny_tokenizer):
    # RocketQAv2: the query is cut to q_max_len tokens before pairing.
    enc = tokenize.encode_pairs(
        tiny_tokenizer, ["what is a big dog"], ["cats"], max_len=10, q_max_len=2
    )
    assert enc.input_ids.tolist() == [[2, 5, 6, 3, 9, 15, 3, 0, 0, 0]]


def test_string_instead_of_list_is_an_error(tiny_tokenizer):
    with pytest.raises(TypeError, match="list of strings"):
        tokenize.encode_queries(tiny_tokenizer, "what is a dog")


def test_empty_text_is_an_error_naming_its_index(tiny_tokenizer):
    with pytest.raises(tokenize.EmptyTextError, match=r"paras\[1\] is empty"):
        tokenize.encode_passages(tiny_tokenizer, ["dog", "  "])


def test_bucketed_batches_cover_every_row_once_with_fitting_buckets():
    lengths = np.array([3, 40, 17, 9, 64, 2, 33])
    buckets = tokenize.length_buckets(64)
    assert buckets == [16, 32, 48, 64]
    seen = []
    for rows_, length in tokenize.bucketed_batches(lengths, 3, buckets):
        assert length in buckets and lengths[rows_].max() <= length
        seen.extend(rows_.tolist())
    assert sorted(seen) == list(range(len(lengths)))
    assert tokenize.length_buckets(100) == [16, 32, 48, 64, 80, 96, 100]
    assert tokenize.length_buckets(256) == list(range(16, 257, 16))
    assert tokenize.length_buckets(512)[16:] == [288, 320, 352, 384, 416, 448, 480, 512]


# ----------------------------------------------------------------------------- RocketQAv2 pairs


def test_v2_pair_form_cuts_query_then_title_and_para_separately(tiny_tokenizer):
    # q_max_len 4: the query keeps 4 - 2 = 2 wordpieces; title + para share 12 - 4 - 3 = 5,
    # cut from the longer (the para on ties): 3 + 4 -> 3 + 3 -> 3 + 2.
    args = (["what is a dog"], ["a small dog cat"], ["the big title"])
    enc = tokenize.encode_pairs(tiny_tokenizer, *args, max_len=12, q_max_len=4, pair_form="v2")
    assert rows(enc) == (
        [[2, 5, 6, 3, 10, 13, 11, 7, 14, 3, 0, 0]],
        [[0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0]],
        [[1] * 10 + [0, 0]],
    )
    # v1 cuts query and title+para jointly to 12 - 3 = 9 instead: 4 + 7 -> 4 + 5.
    enc = tokenize.encode_pairs(tiny_tokenizer, *args, max_len=12, pair_form="v1")
    assert enc.input_ids.tolist() == [[2, 5, 6, 7, 8, 3, 10, 13, 11, 7, 14, 3]]


def test_v2_pair_form_lengths_at_rocketqa_defaults(tiny_tokenizer):
    # RocketQAv2's reader (q_max_seq_len 32, p_max_seq_len 128): query 30 wordpieces, title +
    # para 125 (100 + 100 -> 63 + 62), [CLS] q [SEP] t p [SEP] = 158 tokens of 160.
    enc = tokenize.encode_pairs(
        tiny_tokenizer, ["dog " * 40], ["big " * 100], ["cat " * 100], pair_form="v2"
    )
    ids = enc.input_ids[0].tolist()
    assert enc.lengths.tolist() == [158] and enc.input_ids.shape == (1, 160)
    assert ids[:32] == [2] + [8] * 30 + [3]
    assert ids[32:158] == [9] * 63 + [13] * 62 + [3]
    assert enc.token_type_ids[0].tolist() == [0] * 32 + [1] * 126 + [0, 0]
    # a short query is not padded out: the passage follows its [SEP] directly
    enc = tokenize.encode_pairs(
        tiny_tokenizer, ["cat"], ["a dog"], ["-"], 16, q_max_len=8, pair_form="v2"
    )
    assert enc.input_ids.tolist() == [[2, 9, 3, 7, 8, 3] + [0] * 10]


def test_v2_pair_form_needs_room_for_the_passage(tiny_tokenizer):
    with pytest.raises(ValueError, match="q_max_len"):
        tokenize.encode_pairs(tiny_tokenizer, ["cat"], ["dog"], max_len=32, pair_form="v2")
    with pytest.raises(ValueError, match="pair_form"):
        tokenize.encode_pairs(tiny_tokenizer, ["cat"], ["dog"], pair_form="v3")


# ----------------------------------------------------------------------------- literal titles
# The tiny vocab has no "-": it is [UNK] (1), one token, where the other forms drop it.


@pytest.mark.parametrize("title", ["-", None])
def test_literal_titles_keep_the_dash_as_a_token(tiny_tokenizer, title):
    enc = tokenize.encode_passages(
        tiny_tokenizer, ["a cat"], [title], 8, title_form="rocketqa_literal"
    )
    assert rows(enc) == (
        [[2, 1, 3, 7, 9, 3, 0, 0]],
        [[0, 0, 0, 1, 1, 1, 0, 0]],
        [[1] * 6 + [0] * 2],
    )
    enc = tokenize.encode_pairs(
        tiny_tokenizer, ["cat"], ["a dog"], [title], 8, title_form="rocketqa_literal"
    )
    assert rows(enc) == ([[2, 9, 3, 1, 7, 8, 3, 0]], [[0, 0, 0, 1, 1, 1, 1, 0]], [[1] * 7 + [0]])
    enc = tokenize.encode_pairs(
        tiny_tokenizer, ["cat"], ["a dog"], [title], 8, pair_form="v2", q_max_len=3,
        title_form="rocketqa_literal",
    )  # fmt: skip
    assert enc.input_ids.tolist() == [[2, 9, 3, 1, 7, 3, 0, 0]]  # "-" + "a" in 8 - 3 - 3 = 2


def test_literal_empty_title_is_an_empty_first_segment(tiny_tokenizer):
    enc = tokenize.encode_passages(
        tiny_tokenizer, ["a cat", "dog"], ["", "the title"], 7, title_form="rocketqa_literal"
    )
    assert enc.input_ids.tolist() == [[2, 3, 7, 9, 3, 0, 0], [2, 10, 11, 3, 8, 3, 0]]
    enc = tokenize.encode_pairs(
        tiny_tokenizer, ["cat"], ["a dog"], [""], 8, title_form="rocketqa_literal"
    )
    assert enc.input_ids.tolist() == [[2, 9, 3, 7, 8, 3, 0, 0]]


def test_other_title_forms_still_drop_the_dash_in_pairs(tiny_tokenizer):
    for form in ("hf", "rocketqa"):
        enc = tokenize.encode_pairs(tiny_tokenizer, ["cat"], ["a dog"], ["-"], 6, title_form=form)
        assert enc.input_ids.tolist() == [[2, 9, 3, 7, 8, 3]]
    with pytest.raises(ValueError, match="title_form"):
        tokenize.encode_passages(tiny_tokenizer, ["dog"], ["-"], title_form="literal")


def test_loader_threads_pair_and_title_forms(tiny_tokenizer):
    from configs import common
    from rqa_jax.data.loader import BatchSpec, tokenize_batch

    assert common.get_cross_config().pair_form == "v1"
    examples = [{"query": "what is a dog", "title": "", "para": "a small dog cat", "label": 1}]
    spec = BatchSpec("cross", 1, cross_max_len=12, cross_q_max_len=4, pair_form="v2",
                     title_form="rocketqa_literal")  # fmt: skip
    got = tokenize_batch(spec, tiny_tokenizer, examples)["pairs"]["input_ids"]
    # examples write a missing title as '': in the literal form that is RocketQA's "-"
    assert got.tolist() == [[2, 5, 6, 3, 1, 7, 14, 8, 9, 3, 0, 0]]
    dual = [{"query": "cat", "positive": {"title": "", "text": "dog"},
             "negatives": [{"title": "big", "text": "cat"}]}]  # fmt: skip
    spec = BatchSpec("dual", 1, q_max_len=4, p_max_len=6, title_form="rocketqa_literal")
    got = tokenize_batch(spec, tiny_tokenizer, dual)["passages"]["input_ids"]
    assert got.tolist() == [[[2, 1, 3, 8, 3, 0], [2, 13, 3, 9, 3, 0]]]
    with pytest.raises(ValueError, match="pair_form"):
        BatchSpec("cross", 1, pair_form="v3")
