"""Every notebook's Python cells run top to bottom (shell/magic lines are skipped)."""

import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_cells_run(path):
    cells = json.loads(path.read_text())["cells"]
    scope: dict = {}
    for cell in cells:
        if cell["cell_type"] != "code":
            continue
        lines = [line for line in cell["source"] if not line.lstrip().startswith(("!", "%"))]
        exec(compile("".join(lines), f"{path.name}", "exec"), scope)
    assert scope, "no code ran"
