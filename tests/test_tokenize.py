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
