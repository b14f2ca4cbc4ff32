"""`rqa pipeline v1` on Natural Questions as RocketQA released it, from DPR-format files the
test writes (the sample in DPR's form, with answer strings): de0 on nq-train.json's hard
negatives, the re-ranker and the denoised data chosen by answers, answer recall@5/20/100
on the test questions for every retriever."""

from pathlib import Path

import pytest

from rqa_jax.config_flags import load_config
from rqa_jax.data import formats as F
from rqa_jax.data.sample import generate, write_dpr_form
from rqa_jax.pipelines.rocketqa_v1 import run_pipeline

ROOT = Path(__file__).resolve().parent.parent
CONFIG = str(ROOT / "configs" / "rocketqa_v1_pipeline_nq.py") + ":runlocal"


@pytest.mark.slow
def test_nq_pipeline_from_dpr_files_reports_answer_recall(tmp_path):
    sample, dpr = tmp_path / "sample", tmp_path / "dpr"
    generate(sample, entities_per_type=20, train_queries=60, dev_queries=20, seed=1,
             false_negative_share=0.5, unlabeled_questions=30, with_answers=True)  # fmt: skip
    write_dpr_form(sample, dpr)
    config = load_config(CONFIG)
    config.data.source, config.data.dir = "nq", str(dpr)
    config.data.unlabeled_queries = str(sample / "queries.unlabeled.tsv")
    config.ablation_undenoised = False  # one training stage less (the MS MARCO test has it)
    work = tmp_path / "v1"
    report = run_pipeline(config, work, progress=False)

    recall = {"answer_recall@5", "answer_recall@20", "answer_recall@100"}
    assert set(report["stages"]) == {"de0", "ce", "de1", "de2"}
    for name, m in report["stages"].items():  # nothing for depths not searched
        assert set(m) == (recall - {"answer_recall@100"} if name == "ce" else recall), name
        assert all(0.0 <= v <= 1.0 for v in m.values())
    assert report["stages"]["de0"]["answer_recall@100"] > 0.5  # 100 of ~500 passages
    # de0 trained on DPR's file (its hard negatives), not on MS MARCO-form files
    stores = {p.name.split("-")[0] for p in (work / "data" / "stores").iterdir()}
    assert "dpr" in stores and "marco_pairs" not in stores
    # the re-ranker's data: one positive and one negative line per answered question at most
    ce_rows = list(F.iter_cross_train(work / "ce" / "train.tsv"))
    assert 0 < sum(r.label for r in ce_rows) <= 60 and sum(1 - r.label for r in ce_rows) <= 60
    dn = report["denoise"]
    assert (
        dn["stats"]["queries"] == 60
        and 0 < dn["lines"] == 60 - dn["stats"]["no_positive_or_negative"]
    )
    rows = list(F.iter_dual_train(work / "denoise" / "train.tsv"))
    assert len(rows) == dn["lines"] and len({r.query for r in rows}) == len(rows)  # one a question
    assert "reranker_check" in report and report["reranker_check"]["difference"]["queries"] > 0
    md = (work / "report.md").read_text()
    assert "| model | R@5 | R@20 | R@100 |" in md and "MRR@10 |" not in md.split("##")[0]
