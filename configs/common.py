"""Defaults shared by every experiment (RocketQA's): other configs start from these.

Locked: setting a key that does not exist (a typo on the command line) is an error.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.model_dir = ""  # HF BERT/ERNIE dir (e.g. the MiniLM package's) to initialise from
    c.q_max_len = 32  # query tokens, [CLS] and [SEP] included
    c.p_max_len = 128  # title + para tokens
    c.cross_max_len = 160  # cross-encoder pair tokens
    c.pooling = "cls"  # "cls" (RocketQA) | "mean" (sentence-transformers models)
    c.normalize = False  # L2-normalise vectors before the inner product
    c.tie_towers = False  # RocketQA v1 trains separate query and passage towers
    c.title_form = "hf"  # passage without title: "hf" single text | "rocketqa" [CLS] [SEP] p [SEP]
    c.dtype = "float32"  # compute dtype: "float32" | "bfloat16"; parameters stay float32
    c.param_dtype = "float32"
    c.remat = False  # recompute each layer in the backward pass (less memory)
    c.scan_layers = False  # one nn.scan over layers: fast compiles for deep models
    c.train_batch_size = 512  # global queries per step (RocketQA: 512 per GPU x 8)
    c.eval_batch_size = 256  # rows per encoding batch
    c.seed = 0
    c.lock()
    return c


def get_dual_config() -> ml_collections.ConfigDict:
    """Everything a dual-encoder training run reads, with RocketQA's values (paper/code)."""
    c = get_config()
    c.unlock()
    c.task = "dual"
    c.tokenizer_dir = ""  # default: model_dir
    c.model_config = ml_collections.ConfigDict()  # BertConfig fields when training from scratch
    c.data = ml_collections.ConfigDict(
        {
            "source": "marco",  # sample | marco | rocketqa_tsv | dpr | tfds
            "dir": "",  # MS MARCO files, or TFDS manual_dir
            "path": "",  # rocketqa_tsv / dpr file
            "tfds_name": "msmarco_passage",
            "tfds_dir": "",
            "num_random_negatives": 1,  # MS MARCO step 1: random corpus negatives per query
            "sample_seed": 0,
            "dev_max_queries": 0,  # 0 = all dev queries
        }
    )
    c.num_negatives = 1  # hard negatives per query in the batch: passages are [B, 1+k]
    c.cross_batch = True  # all-gather passages across 'data' devices (RocketQA)
    c.logit_scale = 1.0  # logits = scale * <q, p>; RocketQA uses raw inner products
    c.dropout = True
    c.learning_rate = 3e-5
    c.warmup_proportion = 0.1
    c.weight_decay = 0.0
    c.clip_norm = 1.0
    c.num_train_steps = 0  # 0: derive from num_epochs
    c.num_epochs = 40
    c.log_every = 50
    c.eval_every = 0  # 0: no dev evaluation during training
    c.eval_at_start = True
    c.checkpoint_every = 1000
    c.keep_checkpoints = 3
    c.partition_rules = "replicated"  # replicated | model_parallel
    c.mesh_model = 1  # devices per model replica on the 'model' axis
    c.lock()
    return c


def get_cross_config() -> ml_collections.ConfigDict:
    """Everything a cross-encoder (re-ranker) run reads, with RocketQA's values (paper/code)."""
    c = get_dual_config()
    c.unlock()
    c.task = "cross"
    c.cross_head = "v1"  # v1: pooler -> 2-way softmax, score P(relevant); v2: [CLS] -> linear(1)
    c.objective = "pointwise"  # pointwise (v1) | listwise (v2: positive first in each list)
    c.list_size = 0  # passages per query for listwise
    c.cross_q_max_len = 0  # v2 cuts the query to 32 tokens first; 0 = no cut
    c.fgm_epsilon = 0.01  # FGM adversarial step on word embeddings (RocketQA); 0 = off
    c.rerank_top_k = 100  # candidates re-ranked per dev query
    c.data.train_run = ""  # retriever run over the train queries: negatives come from it
    c.data.dev_run = ""  # candidate run over the dev queries, re-ranked for dev MRR@10
    c.data.negative_depth = 1000  # RocketQA samples negatives from the top 1000
    c.train_batch_size = 512  # 64 per GPU x 8
    c.learning_rate = 1e-5
    c.warmup_proportion = 0.1
    c.weight_decay = 0.01
    c.num_epochs = 2
    c.lock()
    return c


def get_runlocal_config() -> ml_collections.ConfigDict:
    """A tiny variant for a laptop or Colab CPU."""
    c = get_config()
    c.q_max_len, c.p_max_len, c.cross_max_len = 16, 64, 80
    c.train_batch_size, c.eval_batch_size = 8, 32
    return c
