"""`rqa pipeline v2` end to end on the sample with tiny models: with no initial models it
trains RocketQA's first retriever and re-ranker itself, builds hybrid lists that the joint
reader loads, trains jointly with both ablations, reports every model; a finished pipeline
does no work; initial models given wrongly are refused."""

import json
from pathlib import Path

import pytest

from rqa_jax.config_flags import load_config
from rqa_jax.data import formats as F
from rqa_jax.eval.reranker_check import WeakRerankerError
from rqa_jax.pipelines.rocketqa_v2 import run_pipeline

ROOT = Path(__file__).resolve().parent.parent
CONFIG = str(ROOT / "configs" / "rocketqa_v2_pipeline_marco.py") + ":runlocal"


@pytest.mark.slow
def test_pipeline_v2_from_scratch_with_ablations(tmp_path):
    config = load_config(CONFIG)
    config.ablation_static_distill = config.ablation_other_variant = True
    work = tmp_path / "v2"
    report = run_pipeline(config, work, progress=False)
    assert report["ran"] == ["init_retriever", "init_reranker", "lists", "joint", "static_distill",
                             "joint_paper"]  # fmt: skip
    assert (work / "v1" / "de0" / "done.json").is_file() and (
        work / "v1" / "ce" / "done.json"
    ).is_file()
    assert not (work / "v1" / "denoise").exists()  # v1 stopped after its re-ranker
    stages = report["stages"]
    assert set(stages) == {"init_retriever", "init_reranker", "joint_retriever", "joint_reranker",
                           "static_distill_retriever", "joint_paper_retriever", "joint_paper_reranker"}  # fmt: skip
    for name, m in stages.items():
        want = {"mrr@10", "mrr@10_init_candidates"} if name.endswith("reranker") else {
            "mrr@10", "recall@50", "recall@1000"}  # fmt: skip
        assert set(m) == want and all(0.0 <= v <= 1.0 for v in m.values()), name
    m = config.joint.list_size
    blocks = list(F.iter_joint_lists(work / "lists" / "train.tsv", m, extra_positives="error"))
    assert len(blocks) == report["lists"]["lists"] > 0
    assert report["lists"]["rand"]["lists"] > 0 and report["lists"]["aug_train"]["lists"] > 0
    assert (Path(report["exports"]["reranker"]) / "config.json").is_file()
    assert (Path(report["exports"]["retriever"]) / "query_encoder" / "config.json").is_file()
    assert report["start"] == {"init_retriever": "v1's de0", "init_reranker": "v1's ce"}
    assert "| init_retriever (v1's de0) |" in (work / "report.md").read_text()  # not "37.0"
    saved = json.loads((work / "report.json").read_text())
    assert (
        saved["stages"] == stages
        and "| static_distill_retriever |" in (work / "report.md").read_text()
    )
    again = run_pipeline(config, work, progress=False)
    assert again["ran"] == [] and again["stages"] == stages

    # from a finished v1 workdir: its models and data, nothing of v1 trained again
    config.init.v1_workdir = str(work / "v1")
    config.ablation_static_distill = config.ablation_other_variant = False
    # the guard on the teacher: short of the retriever + margin, nothing is distilled from it
    config.guard.allow_weak_reranker, config.guard.margin = False, 1.5
    with pytest.raises(WeakRerankerError, match=r"initial re-ranker \(the teacher\) does not beat"):
        run_pipeline(config, tmp_path / "from_v1", progress=False)
    assert not (tmp_path / "from_v1" / "lists").exists()
    config.guard.allow_weak_reranker = True
    reuse = run_pipeline(config, tmp_path / "from_v1", progress=False)
    assert reuse["ran"] == ["lists", "joint"]
    check = reuse["teacher_check"]
    assert check["guard"] == {"margin": 1.5, "passed": False, "allowed_weak": True}
    assert check["reranker_mrr@10"] == pytest.approx(stages["init_reranker"]["mrr@10"])
    assert check["retriever_mrr@10"] == pytest.approx(stages["init_retriever"]["mrr@10"])
    assert reuse["stages"]["init_retriever"] == stages["init_retriever"]
    assert not (tmp_path / "from_v1" / "v1").exists()


def test_initial_models_given_wrongly_are_refused(tmp_path):
    config = load_config(CONFIG)
    config.init.retriever_dir = str(tmp_path)
    with pytest.raises(ValueError, match="go together"):
        run_pipeline(config, tmp_path / "w", progress=False)
    config.init.retriever_dir, config.init.v1_workdir = "", str(tmp_path / "nothing")
    with pytest.raises(FileNotFoundError, match="rqa pipeline v1"):
        run_pipeline(config, tmp_path / "w", progress=False)
    config.init.v1_workdir, config.lists.mix = "", "rand+random"
    with pytest.raises(ValueError, match=r"lists\.mix"):
        run_pipeline(config, tmp_path / "w", progress=False)


def test_pipeline_retrieval_encodes_passages_with_their_titles(tmp_path, minilm_dir):
    """What the pipelines search is the corpus as training saw it: titles included."""
    import numpy as np

    from rqa_jax.data.binrun import read_run_top
    from rqa_jax.data.store import CorpusStore, ensure_corpus
    from rqa_jax.inference import load_dual_encoder
    from rqa_jax.pipelines.retrieval import Retriever

    corpus = {"p1": ("Mercury", "the smallest planet"), "p2": (None, "a river in spain"),
              "p3": ("Jazz", "music from new orleans")}  # fmt: skip
    source = [(pid, title, text) for pid, (title, text) in corpus.items()]
    (tmp_path / "c.tsv").write_text("for the store's key\n")
    store = CorpusStore(
        ensure_corpus(
            tmp_path / "cache", [tmp_path / "c.tsv"], lambda: iter(source), progress=False
        )
    )
    (tmp_path / "stage").mkdir()
    run = Retriever(minilm_dir, store, tmp_path / "stage", "exact", progress=False).search(
        {"q": "which planet is smallest"}, 3, tmp_path / "stage" / "q.bin"
    )
    hits = read_run_top(run, 3, store.pid_of_rows)["q"]
    model = load_dual_encoder(minilm_dir)
    q = model.encode_query(["which planet is smallest"])[0]
    p = model.encode_para([t for _, t in corpus.values()], [title for title, _ in corpus.values()])
    want = dict(zip(corpus, p @ q, strict=True))
    for pid, score in hits:
        np.testing.assert_allclose(score, want[pid], rtol=1e-4)
    untitled = model.encode_para(["the smallest planet"])[0] @ q
    assert abs(dict(hits)["p1"] - untitled) > 1e-3  # the title changed the score
