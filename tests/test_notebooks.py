"""Every notebook runs top to bottom in a real Jupyter kernel (nbclient), in its quick mode,
and is stored without outputs.

The kernel is this interpreter (the venv's), named in a kernelspec written for the test:
jupyter_client would otherwise take the "python3" kernelspec, whose ``python`` can resolve to
another interpreter. The notebooks write their workdirs under ``RQA_NOTEBOOK_OUT`` (a temp
dir here), so a run leaves nothing in the repository.
"""

import json
import os
import sys
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
IDS = [p.name for p in NOTEBOOKS]
KERNEL = "rqa-jax-test"
FORCED_DEVICES = "--xla_force_host_platform_device_count"

# runs first in the kernel: which interpreter and environment it is
PROBE = (
    "import json, os, sys\nprint(json.dumps({'executable': sys.executable, 'prefix': sys.prefix}))"
)


def _kernel_manager(tmp: Path) -> KernelManager:
    spec_dir = tmp / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "rqa_jax (test venv)",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    ksm = KernelSpecManager(kernel_dirs=[str(tmp / "kernels")], ensure_native_kernel=False)
    return KernelManager(kernel_name=KERNEL, kernel_spec_manager=ksm)


def _kernel_env(out: Path) -> dict[str, str]:
    env = dict(os.environ)
    # a notebook runs on whatever devices the runtime has (Colab's CPU: one): drop the 8
    # simulated devices the test session's conftest asks for
    flags = [f for f in env.get("XLA_FLAGS", "").split() if not f.startswith(FORCED_DEVICES)]
    env["XLA_FLAGS"] = " ".join(flags)
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(  # the kernel must not depend on the venv being on PATH
        p for p in env.get("PATH", "").split(os.pathsep) if p and p != venv_bin
    )
    env.update(
        RQA_NOTEBOOK_QUICK="1",
        RQA_NOTEBOOK_OUT=str(out),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        JAX_PLATFORMS="cpu",
        TOKENIZERS_PARALLELISM="false",
        PYDEVD_DISABLE_FILE_VALIDATION="1",  # ipykernel's debugger warns about frozen modules
    )
    return env


def _repo_files() -> set[str]:
    """What a notebook run could leave behind: the repo's top level and notebooks/."""
    return {p.name for p in ROOT.iterdir()} | {
        f"notebooks/{p.name}" for p in (ROOT / "notebooks").iterdir()
    }


def _outputs_text(cell) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            parts.append(out["text"])
        elif "data" in out:
            parts.append(out["data"].get("text/plain", ""))
        elif out.get("output_type") == "error":
            parts.append("\n".join(out["traceback"]))
    return "".join(parts)


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_runs_in_a_kernel(path, tmp_path):
    nb = nbformat.read(path, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell(PROBE))
    before = _repo_files()
    client = NotebookClient(
        nb,
        km=_kernel_manager(tmp_path),
        timeout=600,
        startup_timeout=120,
        resources={"metadata": {"path": str(path.parent)}},  # the kernel's cwd, as in Jupyter
    )
    client.execute(env=_kernel_env(tmp_path / "out"))

    probe = json.loads(_outputs_text(nb.cells[0]))
    assert probe["executable"] == sys.executable
    assert probe["prefix"] == sys.prefix
    ran = [c for c in nb.cells[1:] if c.cell_type == "code"]
    assert ran and all(c.execution_count for c in ran)
    assert not [c for c in ran for o in c.outputs if o.output_type == "error"]
    assert _repo_files() == before, "the notebook left files in the repository"
    if path.stem.startswith("rocketqa_"):
        report = tmp_path / "out" / f"{path.stem.removeprefix('rocketqa_')}-quick" / "report.md"
        assert report.is_file()
        shown = "".join(o.get("data", {}).get("text/markdown", "") for c in ran for o in c.outputs)
        assert report.read_text() in shown  # report.md rendered in the notebook


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_is_stored_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"cell {i} has outputs"
            assert cell.execution_count is None, f"cell {i} has an execution count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_starts_with_badge_install_and_devices(path):
    cells = nbformat.read(path, as_version=4).cells
    badge = (
        f"https://colab.research.google.com/github/rqa-jax/rqa_jax/blob/main/notebooks/{path.name}"
    )
    assert cells[0].cell_type == "markdown" and badge in cells[0].source
    assert cells[1].cell_type == "code" and '"google.colab" in sys.modules' in cells[1].source
    assert "pip" in cells[1].source and "git+" in cells[1].source
    assert cells[2].cell_type == "code" and "jax.devices()" in cells[2].source
