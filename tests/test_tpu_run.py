"""launch/tpu_run.sh against a fake ``gcloud`` first on PATH (no network, no TPU).

The fake logs each call's argv as one JSON list per line, answers ``describe`` with a worker
count, keeps a copy of each file it is asked to ``scp``, fails calls that contain a chosen
string, and can run an ``ssh --command`` locally with bash, HOME being a sandbox dir, as a
worker would: that is how the quoting and per-worker-log tests see what a worker receives.
"""

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "launch" / "tpu_run.sh"
TPU = ["compute", "tpus", "tpu-vm"]

FAKE_GCLOUD = """#!{python}
import json, os, shutil, subprocess, sys

args = sys.argv[1:]
with open(os.environ["FAKE_GCLOUD_LOG"], "a") as f:
    f.write(json.dumps(args) + "\\n")
fail = os.environ.get("FAKE_GCLOUD_FAIL")
if fail and any(fail in a for a in args):
    print("fake gcloud: failing on purpose", file=sys.stderr)
    sys.exit(7)
verb = args[3] if args[:3] == ["compute", "tpus", "tpu-vm"] else ""
if verb == "describe":
    print(os.environ.get("FAKE_GCLOUD_WORKERS", "2"))
elif verb == "scp":
    keep = os.environ["FAKE_GCLOUD_SCP_DIR"]
    n = len(os.listdir(keep))
    shutil.copy(args[4], os.path.join(keep, f"{{n}}-" + os.path.basename(args[4])))
elif verb == "ssh" and os.environ.get("FAKE_GCLOUD_SANDBOX"):
    command = args[args.index("--command") + 1]
    worker = [a for a in args if a.startswith("--worker=")][0].split("=", 1)[1]
    env = dict(os.environ, HOME=os.environ["FAKE_GCLOUD_SANDBOX"], FAKE_WORKER=worker)
    sys.exit(subprocess.run(["bash", "-c", command], env=env).returncode)
"""

# What the run tests execute "on" each worker: writes its argv, cwd and venv marker to
# $FAKE_OUT/worker-<i>.json and says hello on stdout (for the worker's log).
DUMP_ARGV = (
    "import json, os, sys; w = os.environ['FAKE_WORKER']; print('hello from worker', w); "
    "open(os.path.join(os.environ['FAKE_OUT'], f'worker-{w}.json'), 'w').write(json.dumps("
    "{'argv': sys.argv[1:], 'cwd': os.getcwd(), 'venv': os.environ.get('FAKE_VENV')}))"
)
NASTY_ARGS = [
    'a b "c" $HOME',
    "it's",
    "",
    "semi; colon && $(echo no) `echo no` *",
    "two\nlines",
    "--workdir",
    "gs://bucket/run 1",
    "--config.data.dir=gs://bucket/msmarco",
]


class Fake:
    """The fake gcloud's environment and what it recorded."""

    def __init__(self, tmp: Path) -> None:
        self.bin, self.scp, self.home, self.out = (tmp / d for d in ("bin", "scp", "home", "out"))
        for d in (self.bin, self.scp, self.home, self.out):
            d.mkdir()
        self.log = tmp / "gcloud.jsonl"
        self.log.touch()
        gcloud = self.bin / "gcloud"
        gcloud.write_text(FAKE_GCLOUD.format(python=sys.executable))
        gcloud.chmod(0o755)
        # A worker's home after `setup`: the checkout and a venv whose activation is visible.
        (self.home / "rqa_jax").mkdir()
        (self.home / "rqa_venv" / "bin").mkdir(parents=True)
        (self.home / "rqa_venv" / "bin" / "activate").write_text("export FAKE_VENV=active\n")
        self.env = {
            **os.environ,
            "PATH": f"{self.bin}{os.pathsep}{os.environ['PATH']}",
            "TMPDIR": str(tmp),
            "FAKE_GCLOUD_LOG": str(self.log),
            "FAKE_GCLOUD_SCP_DIR": str(self.scp),
            "FAKE_OUT": str(self.out),
        }

    def sandbox(self) -> None:
        """Let ``ssh --command`` run locally in the fake worker home."""
        self.env["FAKE_GCLOUD_SANDBOX"] = str(self.home)

    def calls(self) -> list[list[str]]:
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def verbs(self) -> list[str]:
        """Each call as its tpu-vm verb, ssh calls as ``ssh:<worker>``."""
        out = []
        for c in self.calls():
            assert c[:3] == TPU, c
            worker = [a.split("=", 1)[1] for a in c if a.startswith("--worker=")]
            out.append(f"{c[3]}:{worker[0]}" if c[3] == "ssh" else c[3])
        return out


@pytest.fixture
def fake(tmp_path: Path) -> Fake:
    return Fake(tmp_path)


def tpu_run(fake: Fake, *args: str, script: Path = SCRIPT) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(script), *args], env=fake.env, capture_output=True, text=True, timeout=60
    )


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(repo), *args],
        check=True,
        capture_output=True,
    )


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A git checkout holding this tpu_run.sh, with a committed, an edited, a deleted, an
    untracked and an ignored file."""
    repo = tmp_path / "repo"
    (repo / "launch").mkdir(parents=True)
    (repo / "configs").mkdir()
    shutil.copy(SCRIPT, repo / "launch" / "tpu_run.sh")
    (repo / ".gitignore").write_text("/ignored/\n*.pyc\n")
    (repo / "setup.py").write_text("committed\n")
    (repo / "configs" / "common.py").write_text("committed\n")
    (repo / "gone.txt").write_text("committed, then deleted\n")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "init")
    (repo / "configs" / "common.py").write_text("edited, not committed\n")
    (repo / "gone.txt").unlink()
    (repo / "configs" / "my run.py").write_text("untracked\n")
    (repo / "ignored").mkdir()
    (repo / "ignored" / "big.bin").write_text("ignored\n")
    (repo / "configs" / "x.pyc").write_text("ignored\n")
    return repo


def arg_after(call: list[str], flag: str) -> str:
    return call[call.index(flag) + 1]


# ---- usage and options --------------------------------------------------------------------


@pytest.mark.parametrize("args", [["-h"], ["--help"], ["run", "--help"]])
def test_help_prints_usage_and_calls_nothing(fake: Fake, args: list[str]) -> None:
    r = tpu_run(fake, *args)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Usage: launch/tpu_run.sh SUBCOMMAND")
    for sub in ("create", "setup", "run", "delete", "all"):
        assert f"\n  {sub} " in r.stdout
    assert fake.calls() == []


NZ = ["--name", "n", "--zone", "z"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give a subcommand"),
        (["launch", *NZ], "unknown subcommand: launch"),
        (["delete", *NZ, "--bogus"], "unknown option: --bogus"),
        (["delete", *NZ, "--spot"], "unknown option: --spot"),
        (["delete", "--zone", "z"], "--name is required"),
        (["run", "--name", "n"], "--zone is required"),
        (["create", *NZ], "--accelerator-type is required"),
        (["create", *NZ, "--accelerator-type", "v4-32", "--spot", "--preemptible"], "not both"),
        (["create", *NZ, "--accelerator-type", "tpu9-8"], "no default --version"),
        (["create", *NZ, "--accelerator-type", "v4-32", "--spot=yes"], "takes no value"),
        (["run", *NZ], "give the command to run after --"),
        (["run", *NZ, "--"], "give the command to run after --"),
        (["delete", *NZ, "--", "ls"], "takes no command"),
        (["setup", "--name", "n", "--zone"], "--zone needs a value"),
    ],
)
def test_bad_usage_exits_2_with_usage_on_stderr(fake: Fake, args: list[str], message: str) -> None:
    r = tpu_run(fake, *args)
    assert r.returncode == 2
    assert message in r.stderr
    assert "Usage: launch/tpu_run.sh" in r.stderr
    assert r.stdout == ""
    assert fake.calls() == []


# ---- create / delete ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "tail"),
    [
        (
            ["--accelerator-type", "v4-32", "--spot"],
            ["--accelerator-type", "v4-32", "--version", "tpu-ubuntu2204-base", "--spot"],
        ),
        (
            ["--accelerator-type=v5litepod-32", "--preemptible"],
            [
                "--accelerator-type",
                "v5litepod-32",
                "--version",
                "v2-alpha-tpuv5-lite",
                "--preemptible",
            ],
        ),
        (
            ["--accelerator-type", "v5p-64", "--version", "my-runtime", "--project", "proj"],
            ["--accelerator-type", "v5p-64", "--version", "my-runtime", "--project", "proj"],
        ),
        (
            ["--accelerator-type", "v6e-16"],
            ["--accelerator-type", "v6e-16", "--version", "v2-alpha-tpuv6e"],
        ),
    ],
)
def test_create(fake: Fake, extra: list[str], tail: list[str]) -> None:
    r = tpu_run(fake, "create", "--name", "rqa", "--zone", "us-central2-b", *extra)
    assert r.returncode == 0, r.stderr
    assert fake.calls() == [[*TPU, "create", "rqa", "--zone", "us-central2-b", *tail]]
    assert "+ gcloud compute tpus tpu-vm create rqa" in r.stderr  # says what it does


def test_delete_does_not_prompt_and_passes_failure_on(fake: Fake) -> None:
    r = tpu_run(fake, "delete", "--name", "rqa", "--zone", "z")
    assert r.returncode == 0, r.stderr
    assert fake.calls() == [[*TPU, "delete", "rqa", "--zone", "z", "--quiet"]]
    fake.env["FAKE_GCLOUD_FAIL"] = "delete"
    assert tpu_run(fake, "delete", "--name", "rqa", "--zone", "z").returncode == 7


# ---- setup --------------------------------------------------------------------------------


def test_setup_ships_the_working_tree_to_all_workers(fake: Fake, checkout: Path) -> None:
    r = tpu_run(
        fake, "setup", "--name", "rqa", "--zone", "z", script=checkout / "launch" / "tpu_run.sh"
    )
    assert r.returncode == 0, r.stderr
    scp, ssh = fake.calls()
    assert scp[:4] == [*TPU, "scp"]
    assert scp[5:] == ["rqa:rqa_jax.tar.gz", "--zone", "z", "--worker=all"]
    assert not Path(scp[4]).exists()  # the local tarball is cleaned up
    (kept,) = fake.scp.iterdir()
    with tarfile.open(kept) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert sorted(members) == sorted(
            [
                ".gitignore",
                "setup.py",
                "configs/common.py",
                "configs/my run.py",
                "launch/tpu_run.sh",
            ]
        )
        text = {n: tar.extractfile(m).read().decode() for n, m in members.items()}
    assert text["configs/common.py"] == "edited, not committed\n"
    assert text["configs/my run.py"] == "untracked\n"
    assert members["launch/tpu_run.sh"].mode & 0o111  # executable bits survive

    assert ssh[:5] == [*TPU, "ssh", "rqa"] and "--worker=all" in ssh
    setup = arg_after(ssh, "--command")
    assert "python3.11 -m venv ~/rqa_venv" in setup
    assert "ppa:deadsnakes/ppa" in setup
    assert "sys.version_info < (3, 11)" in setup
    assert "tar -xzf ~/rqa_jax.tar.gz -C ~/rqa_jax" in setup
    assert "pip install -q -e . 'jax[tpu]==0.10.2'" in setup
    assert subprocess.run(["bash", "-n", "-c", setup]).returncode == 0


def test_setup_python_option_and_jax_pin_matches_setup_py(fake: Fake) -> None:
    pin = next(
        line.strip(' ",')
        for line in (SCRIPT.parents[1] / "setup.py").read_text().splitlines()
        if line.strip().startswith('"jax==')
    )
    r = tpu_run(fake, "setup", "--name", "rqa", "--zone", "z", "--python", "python3.12")
    assert r.returncode == 0, r.stderr
    setup = arg_after(fake.calls()[-1], "--command")
    assert "python3.12 -m venv" in setup and "python3.12-venv" in setup
    assert "python3.11" not in setup
    assert f"'jax[tpu]=={pin.split('==')[1]}'" in setup


# ---- run ----------------------------------------------------------------------------------


def test_run_quotes_once_and_logs_each_worker(fake: Fake, tmp_path: Path) -> None:
    fake.sandbox()
    logs = tmp_path / "logs"
    cmd = [sys.executable, "-c", DUMP_ARGV, *NASTY_ARGS]
    r = tpu_run(fake, "run", "--name", "rqa", "--zone", "z", "--log-dir", str(logs), "--", *cmd)
    assert r.returncode == 0, r.stderr
    assert fake.verbs()[0] == "describe"
    assert sorted(fake.verbs()[1:]) == ["ssh:0", "ssh:1"]  # one ssh per worker
    for w in ("0", "1"):
        got = json.loads((fake.out / f"worker-{w}.json").read_text())
        assert got["argv"] == NASTY_ARGS  # intact: not split, not expanded
        assert got["cwd"] == str(fake.home / "rqa_jax")
        assert got["venv"] == "active"
        assert (logs / f"worker-{w}.log").read_text() == f"hello from worker {w}\n"
    assert r.stdout == "hello from worker 0\n"  # worker 0 is also shown


def test_run_workers_option_skips_describe(fake: Fake, tmp_path: Path) -> None:
    r = tpu_run(
        fake,
        "run",
        "--name",
        "rqa",
        "--zone",
        "z",
        "--workers",
        "3",
        "--log-dir",
        str(tmp_path / "logs"),
        "--",
        "true",
    )
    assert r.returncode == 0, r.stderr
    assert sorted(fake.verbs()) == ["ssh:0", "ssh:1", "ssh:2"]
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == [
        "worker-0.log",
        "worker-1.log",
        "worker-2.log",
    ]


def test_run_default_log_dir(fake: Fake, tmp_path: Path) -> None:
    fake.env["FAKE_GCLOUD_WORKERS"] = "1"
    r = tpu_run(fake, "run", "--name", "rqa", "--zone", "z", "--", "true")
    assert r.returncode == 0, r.stderr
    (run_dir,) = (tmp_path / "rqa_tpu_run").iterdir()
    assert run_dir.name.startswith("rqa-")
    assert (run_dir / "worker-0.log").exists()


def test_run_fails_naming_the_failed_worker(fake: Fake, tmp_path: Path) -> None:
    fake.sandbox()
    logs = tmp_path / "logs"
    worker_1_fails = "[ $FAKE_WORKER = 0 ] || exit 5; echo ok"
    r = tpu_run(
        fake,
        "run",
        "--name",
        "rqa",
        "--zone",
        "z",
        "--log-dir",
        str(logs),
        "--",
        "bash",
        "-c",
        worker_1_fails,
    )
    assert r.returncode == 5
    assert f"worker 1 failed (exit 5), see {logs}/worker-1.log" in r.stderr
    assert "1 of 2 workers failed: 1" in r.stderr
    assert (logs / "worker-0.log").read_text() == "ok\n"
    assert (logs / "worker-1.log").exists()


def test_run_bad_worker_count(fake: Fake) -> None:
    fake.env["FAKE_GCLOUD_WORKERS"] = ""
    r = tpu_run(fake, "run", "--name", "rqa", "--zone", "z", "--", "true")
    assert r.returncode == 1
    assert "give --workers K" in r.stderr
    assert fake.verbs() == ["describe"]


# ---- all ----------------------------------------------------------------------------------

ALL = ["all", "--name", "rqa", "--zone", "z", "--accelerator-type", "v4-32", "--spot"]


def all_run(fake: Fake, checkout: Path, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    script = checkout / "launch" / "tpu_run.sh"
    return tpu_run(
        fake,
        *ALL,
        "--log-dir",
        str(tmp_path / "logs"),
        *extra,
        "--",
        "rqa",
        "train",
        "--workdir",
        "gs://bucket/run",
        script=script,
    )


def test_all_runs_the_steps_in_order(fake: Fake, checkout: Path, tmp_path: Path) -> None:
    r = all_run(fake, checkout, tmp_path)
    assert r.returncode == 0, r.stderr
    verbs = fake.verbs()
    assert verbs[:4] == ["create", "scp", "ssh:all", "describe"]
    assert sorted(verbs[4:6]) == ["ssh:0", "ssh:1"]
    assert verbs[6:] == ["delete"]
    calls = fake.calls()
    assert "--spot" in calls[0]
    assert "pip install" in arg_after(calls[2], "--command")
    assert arg_after(calls[4], "--command").endswith(" exec rqa train --workdir gs://bucket/run")
    assert calls[-1] == [*TPU, "delete", "rqa", "--zone", "z", "--quiet"]
    assert {p.name for p in (tmp_path / "logs").iterdir()} == {"worker-0.log", "worker-1.log"}


@pytest.mark.parametrize(
    ("fail_on", "verbs_before_delete"),
    [
        ("gs://bucket/run", ["create", "scp", "ssh:all", "describe", "ssh:0", "ssh:1"]),
        ("deadsnakes", ["create", "scp", "ssh:all"]),  # setup fails
        ("v4-32", ["create"]),  # create fails (e.g. no capacity): delete whatever was made
    ],
)
def test_all_deletes_even_when_a_step_fails(
    fake: Fake, checkout: Path, tmp_path: Path, fail_on: str, verbs_before_delete: list[str]
) -> None:
    fake.env["FAKE_GCLOUD_FAIL"] = fail_on
    r = all_run(fake, checkout, tmp_path)
    assert r.returncode == 7  # the failing step's status, not delete's
    verbs = fake.verbs()
    assert verbs[-1] == "delete"
    assert sorted(verbs[:-1]) == sorted(verbs_before_delete)


def test_all_keep_skips_delete(fake: Fake, checkout: Path, tmp_path: Path) -> None:
    r = all_run(fake, checkout, tmp_path, "--keep")
    assert r.returncode == 0, r.stderr
    assert "delete" not in fake.verbs()
    assert "keeping rqa (--keep)" in r.stderr
