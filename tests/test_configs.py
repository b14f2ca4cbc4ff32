"""Configs are locked data whose defaults agree with the library's."""

import pytest

from configs import common
from rqa_jax.models.settings import EncoderSettings


def test_common_defaults_agree_with_encoder_settings():
    c, s = common.get_config(), EncoderSettings()
    assert (c.pooling, c.normalize, c.q_max_len, c.p_max_len, c.title_form) == (
        s.pooling,
        s.normalize,
        s.q_max_len,
        s.p_max_len,
        s.title_form,
    )


def test_unknown_keys_fail_loudly():
    c = common.get_config()
    with pytest.raises(AttributeError):
        c.q_max_length = 64  # typo of q_max_len
    assert common.get_runlocal_config().train_batch_size < c.train_batch_size
