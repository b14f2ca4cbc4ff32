"""Resumable stages: each works in ``workdir/<stage>/`` and, when finished, writes
``done.json`` (its results). A stage whose ``done.json`` exists is skipped; one that was
interrupted runs again and its own steps resume (training from its checkpoint, encoding
and scoring from their progress files), so killing a pipeline anywhere and running the same
command again finishes the job without redoing what was finished.

Multi-host: training and search run on every process; what writes files (corpus encoding,
cross-encoder scoring, runs, data, ``done.json``) runs on process 0 while the others wait.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rqa_jax.parallel import on_process_0

DONE = "done.json"


class Pipeline:
    """Runs named stages in order under one workdir, skipping finished ones."""

    def __init__(self, workdir: str | Path, log: Callable[[str], None] = print) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log = log
        self.ran: list[str] = []  # stages that did work in this call (tests read it)

    def dir(self, stage: str) -> Path:
        d = self.workdir / stage
        d.mkdir(parents=True, exist_ok=True)
        return d

    def done(self, stage: str) -> dict[str, Any] | None:
        path = self.workdir / stage / DONE
        return json.loads(path.read_text()) if path.is_file() else None

    def run(self, stage: str, fn: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
        """``fn(stage_dir) -> results``; skipped (its saved results returned) when done."""
        saved = self.done(stage)
        if saved is not None:
            self.log(f"[{stage}] done before, skipped")
            return saved
        self.log(f"[{stage}] running in {self.dir(stage)}")
        start = time.perf_counter()
        results = fn(self.dir(stage))
        results = {**results, "seconds": round(time.perf_counter() - start, 1)}
        self.ran.append(stage)

        def write() -> None:
            tmp = self.workdir / stage / f"{DONE}.partial"
            tmp.write_text(json.dumps(results, indent=2) + "\n")
            tmp.replace(self.workdir / stage / DONE)

        on_process_0(write, f"{stage} done")
        self.log(f"[{stage}] finished in {results['seconds']} s")
        return results
