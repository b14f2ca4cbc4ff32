#!/usr/bin/env bash
# Run one rqa command on every worker of a Cloud TPU VM pod slice (multi-host JAX).
#
#   launch/tpu_run.sh TPU_NAME ZONE [--setup] -- rqa train --config configs/X.py --workdir /mnt/ckpt/run
#
# --setup first copies this checkout to each worker and installs it (`pip install -e .`).
# Every worker runs the same command at once: one JAX process per host, as multi-host JAX
# (jax.distributed) expects on a pod slice.
set -euo pipefail

usage() { sed -n '2,9p' "$0"; exit 2; }
[[ $# -ge 3 ]] || usage
tpu=$1 zone=$2
shift 2
setup=0
if [[ ${1:-} == --setup ]]; then setup=1; shift; fi
[[ ${1:-} == -- ]] || usage
shift
[[ $# -gt 0 ]] || usage

repo=$(cd "$(dirname "$0")/.." && pwd)
remote_dir=rqa_jax
ssh_all() { gcloud compute tpus tpu-vm ssh "$tpu" --zone "$zone" --worker=all --command "$1"; }

if [[ $setup == 1 ]]; then
  tarball=$(mktemp --suffix=.tar.gz)
  git -C "$repo" archive --format=tar.gz -o "$tarball" HEAD
  gcloud compute tpus tpu-vm scp "$tarball" "$tpu:~/rqa_jax.tar.gz" --zone "$zone" --worker=all
  ssh_all "mkdir -p ~/$remote_dir && tar -xzf ~/rqa_jax.tar.gz -C ~/$remote_dir && \
    cd ~/$remote_dir && python3 -m pip install -q -e . 'jax[tpu]==0.10.2'"
  rm -f "$tarball"
fi

# Quote the command once for the remote shell.
cmd=$(printf '%q ' "$@")
ssh_all "cd ~/$remote_dir && PATH=\$HOME/.local/bin:\$PATH $cmd"
