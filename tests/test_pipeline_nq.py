"""`rqa pipeline v1` on Natural Questions as RocketQA released it, from DPR-format files the
test writes (the sample in DPR's form, with answer strings): de0 on nq-train.json's hard
negatives, the re-ranker and the denoised data chosen by answers, answer recall@5/20/100
on the test questions for every retriever."""

import json
from pathlib import Path

import pytest

from rqa_jax.config_flags import load_config
from rqa_jax.data import formats as F
from rqa_jax.data.sample import generate, write_dpr_form
from rqa_jax.errors import ConfigError
from rqa_jax.eval.answers import has_answer
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
    # the paper's threshold with a re-ranker of 4 steps (its scores all near 0.5): no line
    # survives, and the pipeline says so at the denoise stage, not in the loader
    runlocal_tau, config.denoise.tau_neg = config.denoise.tau_neg, 0.1
    with pytest.raises(ConfigError, match=r"denoise: 0 lines, fewer than one retriever batch "
                       r"\(8\): .* below denoise.tau_neg=0.1 .*scores there range 0\.\d+ to 0\.\d+"):  # fmt: skip
        run_pipeline(config, work, progress=False)
    assert not (work / "denoise" / "train.tsv").exists()
    config.denoise.tau_neg = runlocal_tau  # runlocal's: every non-answer passage passes
    report = run_pipeline(config, work, progress=False)
    assert report["ran"] == ["denoise", "de1", "augment", "de2"]  # de0 and ce kept

    recall = {"answer_recall@5", "answer_recall@20", "answer_recall@100"}
    assert set(report["stages"]) == {"de0", "ce", "de1", "de2"}
    for name, m in report["stages"].items():  # nothing for depths not searched
        assert set(m) == (recall - {"answer_recall@100"} if name == "ce" else recall), name
        assert all(0.0 <= v <= 1.0 for v in m.values())
    # each retriever's figures are the answer recall of the run it wrote, counted here by hand
    # (a 4-step tiny model sits near chance, ~0.5 at 100 of 711 passages: no quality claim)
    passages = {r.id: r.text for r in F.iter_dpr_passages(dpr / "psgs_w100.tsv")}
    questions = [line.split("\t") for line in (dpr / "nq-test.qa.csv").read_text().splitlines()]
    for name in ("de0", "de1", "de2"):
        run = F.read_run(work / name / "dev.run")
        assert len(run) == len(questions) == 20
        for k in (5, 20, 100):
            found = [any(has_answer(passages[pid], json.loads(answers)) for pid, _ in run[str(i)][:k])
                     for i, (_, answers) in enumerate(questions, 1)]  # fmt: skip  # ids: 1-based lines
            assert report["stages"][name][f"answer_recall@{k}"] == pytest.approx(
                sum(found) / len(found)
            ), (name, k)
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
