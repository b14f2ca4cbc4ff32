#!/usr/bin/env bash
# Usage: launch/tpu_run.sh SUBCOMMAND [OPTIONS] [-- CMD ...]
#
# The whole life of a multi-host JAX run on a Cloud TPU VM pod slice (v4-32, v5litepod-32, ...):
#
#   create --name N --zone Z --accelerator-type T [--version V] [--spot | --preemptible]
#       Create the slice: gcloud compute tpus tpu-vm create N --zone Z --accelerator-type T ...
#   setup  --name N --zone Z [--python python3.11]
#       Copy this checkout as it is on disk (tracked files with their uncommitted edits, plus
#       untracked files that .gitignore does not exclude) to ~/rqa_jax on every worker,
#       replacing the previous copy; make the virtualenv ~/rqa_venv with a Python >= 3.11 (see
#       below) and `pip install -e . 'jax[tpu]==0.10.2'` into it.
#   run    --name N --zone Z [--log-dir DIR] [--workers K] -- CMD ...
#       Run CMD on every worker at once (one JAX process per host, as multi-host JAX expects)
#       in ~/rqa_jax with ~/rqa_venv active. Worker i's output goes to DIR/worker-<i>.log
#       (default DIR: $TMPDIR/rqa_tpu_run/N-<time>); worker 0's is shown here too. Exits with
#       a failed worker's status, naming every failed worker, if any failed. K (the number of
#       workers) is read from `gcloud compute tpus tpu-vm describe` unless given.
#   delete --name N --zone Z
#       Delete the slice, without a prompt.
#   all    --name N --zone Z --accelerator-type T [create/setup/run options] [--keep] -- CMD ...
#       create, setup, run, then delete -- also when a step fails or on Ctrl-C (unless --keep).
#
# Every subcommand also takes --project P (default: gcloud's configured project), accepts
# --opt=value as well as --opt value, and prints each gcloud call before making it (on stderr).
# -h/--help prints this text; a bad subcommand or option prints it on stderr and exits 2.
#
# Runtime version: --version defaults by accelerator family, as Google's TPU docs advise for JAX:
#   v6e-* -> v2-alpha-tpuv6e, v5p-* -> v2-alpha-tpuv5, v5litepod-* -> v2-alpha-tpuv5-lite,
#   v2-*, v3-*, v4-* -> tpu-ubuntu2204-base; other types need --version.
# These runtimes are Ubuntu 22.04 images whose python3 is 3.10, older than this project's
# python_requires (>= 3.11). So setup never uses the system Python: it makes ~/rqa_venv with
# --python (a command name, default python3.11; e.g. python3.12), and where a worker lacks it,
# installs it and its venv module from the deadsnakes PPA (apt) first.
#
# Data and work dirs: arguments after `--` reach the remote shell unchanged (quoted once with
# printf %q), so spaces, quotes, `$` and gs:// URLs (--workdir gs://BUCKET/run,
# --config.data.tfds_dir=gs://BUCKET/tfds) pass through as typed; this script does nothing
# special with them. Every worker must see the same workdir (all hosts write each multi-host
# checkpoint together), so it belongs on GCS -- orbax writes checkpoints there and TFDS's
# data_dir may be gs:// -- or on a file system mounted at the same path on every worker.
# Check that CMD keeps a gs:// path a URL: pathlib.Path("gs://B/x") is the local dir gs:/B/x.
# Stopping this script does not stop remote processes; if the TPU stays busy afterwards, run
#   launch/tpu_run.sh run --name N --zone Z -- pkill -f 'rqa train'
#
# Example:
#   launch/tpu_run.sh all --name rqa --zone us-central2-b --accelerator-type v4-32 --spot -- \
#     rqa train --config configs/rocketqa_v1_marco.py --workdir gs://BUCKET/de0
set -euo pipefail

readonly JAX_TPU='jax[tpu]==0.10.2'   # keep equal to setup.py's jax pin
readonly REMOTE_DIR=rqa_jax           # the checkout, under each worker's home
readonly REMOTE_VENV=rqa_venv         # the virtualenv, kept across setups
readonly TARBALL=rqa_jax.tar.gz

# The script's own messages go to fd 3, a copy of stderr that the redirections of a worker's
# output (run) leave alone.
exec 3>&2
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
die_usage() { printf 'tpu_run.sh: %s\n\n' "$1" >&2; usage >&2; exit 2; }
die() { printf 'tpu_run.sh: error: %s\n' "$1" >&2; exit 1; }
say() { printf '==> %s\n' "$*" >&3; }

# gcloud, printed first. The --project flag goes to every call when given.
gc() {
  local args=("$@")
  if [[ -n $project ]]; then args+=(--project "$project"); fi
  printf '+ gcloud%s\n' "$(printf ' %q' "${args[@]}")" >&3
  gcloud "${args[@]}"
}
tpu() { gc compute tpus tpu-vm "$@"; }

# ---- options -----------------------------------------------------------------------------

name='' zone='' project='' accel='' version='' capacity='' python=python3.11
log_dir='' workers='' keep=0
cmd=()

# parse_opts "ALLOWED OPTIONS" ARGS...: sets the globals above; what follows `--` goes to cmd.
parse_opts() {
  local allowed=" $1 " opt val inline
  shift
  while [[ $# -gt 0 ]]; do
    opt=$1 val='' inline=0
    shift
    if [[ $opt == -h || $opt == --help ]]; then usage; exit 0; fi
    if [[ $opt == -- ]]; then cmd=("$@"); return 0; fi
    if [[ $opt == --*=* ]]; then val=${opt#*=} opt=${opt%%=*} inline=1; fi
    [[ $opt == --* && $allowed == *" $opt "* ]] || die_usage "$sub: unknown option: $opt"
    case $opt in
      --spot | --preemptible | --keep)
        [[ $inline == 0 ]] || die_usage "$opt takes no value"
        case $opt in
          --keep) keep=1 ;;
          *) [[ -z $capacity || $capacity == "$opt" ]] || die_usage "--spot or --preemptible, not both"
             capacity=$opt ;;
        esac
        continue ;;
    esac
    if [[ $inline == 0 ]]; then
      [[ $# -gt 0 ]] || die_usage "$opt needs a value"
      val=$1
      shift
    fi
    case $opt in
      --name) name=$val ;;
      --zone) zone=$val ;;
      --project) project=$val ;;
      --accelerator-type) accel=$val ;;
      --version) version=$val ;;
      --python) python=$val ;;
      --log-dir) log_dir=$val ;;
      --workers) workers=$val ;;
    esac
  done
}

need() {  # need VALUE FLAG
  [[ -n $1 ]] || die_usage "$sub: $2 is required"
}

need_cmd() {
  [[ ${#cmd[@]} -gt 0 ]] || die_usage "$sub: give the command to run after --"
}

# The runtime Google advises for JAX on each accelerator family (see the header).
default_version() {
  case $1 in
    v6e-*) echo v2-alpha-tpuv6e ;;
    v5p-*) echo v2-alpha-tpuv5 ;;
    v5litepod-*) echo v2-alpha-tpuv5-lite ;;
    v2-* | v3-* | v4-*) echo tpu-ubuntu2204-base ;;
    *) die_usage "no default --version for accelerator type '$1'; give --version" ;;
  esac
}

# ---- subcommands -------------------------------------------------------------------------

cmd_create() {
  [[ -n $version ]] || version=$(default_version "$accel")
  say "creating TPU VM slice $name ($accel, runtime $version${capacity:+, ${capacity#--}}) in $zone"
  tpu create "$name" --zone "$zone" --accelerator-type "$accel" --version "$version" \
    ${capacity:+"$capacity"}
}

cmd_delete() {
  say "deleting TPU VM slice $name in $zone"
  tpu delete "$name" --zone "$zone" --quiet
}

# pack_checkout OUT: the working tree as git sees it -- tracked files (as edited, deleted ones
# left out) and untracked, not ignored ones -- as a gzipped tar.
pack_checkout() {
  local out=$1 repo list n
  repo=$(git -C "$(dirname "$0")" rev-parse --show-toplevel) \
    || die "$(dirname "$0") is not in a git checkout; setup ships the checkout git lists"
  list=$(mktemp)
  git -C "$repo" ls-files -z --cached --others --exclude-standard \
    | while IFS= read -r -d '' f; do
        if [[ -e $repo/$f || -L $repo/$f ]]; then printf '%s\0' "$f"; fi
      done \
    | sort -zu >"$list"
  n=$(tr -cd '\0' <"$list" | wc -c)
  say "packing $n files of $repo (uncommitted edits and untracked files included)"
  COPYFILE_DISABLE=1 tar -czf "$out" -C "$repo" --null -T "$list"
  rm -f "$list"
}

# The setup script each worker runs (bash, with set -euo pipefail).
remote_setup_script() {
  local py
  py=$(printf %q "$python")
  cat <<EOF
set -euo pipefail
if ! command -v $py >/dev/null || ! $py -c 'import ensurepip, venv' 2>/dev/null; then
  echo "installing $py from the deadsnakes PPA"
  export DEBIAN_FRONTEND=noninteractive
  sudo -E apt-get update -q
  sudo -E apt-get install -y -q software-properties-common
  sudo -E add-apt-repository -y ppa:deadsnakes/ppa
  sudo -E apt-get update -q
  sudo -E apt-get install -y -q $py $py-venv
fi
$py -c 'import sys; sys.exit(sys.version_info < (3, 11))' \\
  || { echo "$py is older than 3.11, which rqa_jax needs" >&2; exit 1; }
if [ -x ~/$REMOTE_VENV/bin/python ] && [ "\$(~/$REMOTE_VENV/bin/python -c 'import sys; print(sys.version_info[:2])')" != "\$($py -c 'import sys; print(sys.version_info[:2])')" ]; then
  rm -rf ~/$REMOTE_VENV
fi
[ -x ~/$REMOTE_VENV/bin/python ] || $py -m venv ~/$REMOTE_VENV
rm -rf ~/$REMOTE_DIR && mkdir -p ~/$REMOTE_DIR && tar -xzf ~/$TARBALL -C ~/$REMOTE_DIR
cd ~/$REMOTE_DIR
~/$REMOTE_VENV/bin/python -m pip install -q --upgrade pip
~/$REMOTE_VENV/bin/python -m pip install -q -e . '$JAX_TPU'
echo "\$(hostname): rqa_jax installed in ~/$REMOTE_VENV (\$(~/$REMOTE_VENV/bin/python --version))"
EOF
}

cmd_setup() {
  local tarball
  tarball=$(mktemp "${TMPDIR:-/tmp}/rqa_jax.XXXXXX")
  pack_checkout "$tarball"
  say "copying the checkout to every worker of $name"
  tpu scp "$tarball" "$name:$TARBALL" --zone "$zone" --worker=all
  rm -f "$tarball"
  say "installing rqa_jax and $JAX_TPU into ~/$REMOTE_VENV ($python) on every worker"
  tpu ssh "$name" --zone "$zone" --worker=all --command "$(remote_setup_script)"
}

# The number of workers (hosts) of the slice.
count_workers() {
  if [[ -z $workers ]]; then
    workers=$(tpu describe "$name" --zone "$zone" --format='value(networkEndpoints.len())')
  fi
  [[ $workers =~ ^[1-9][0-9]*$ ]] \
    || die "could not tell how many workers $name has (got '$workers'); give --workers K"
}

# run_worker I LOG REMOTE_CMD: worker I runs REMOTE_CMD; its output goes to LOG (worker 0's
# also to stdout). Returns gcloud's status.
run_worker() {
  local i=$1 log=$2
  if [[ $i == 0 ]]; then
    tpu ssh "$name" --zone "$zone" --worker="$i" --command "$3" </dev/null 2>&1 | tee "$log"
  else
    tpu ssh "$name" --zone "$zone" --worker="$i" --command "$3" </dev/null >"$log" 2>&1
  fi
}

cmd_run() {
  local remote i rc=0 status
  local -a pids=() failed=()
  count_workers
  [[ -n $log_dir ]] || log_dir=${TMPDIR:-/tmp}/rqa_tpu_run/$name-$(date -u +%Y%m%d-%H%M%S)
  mkdir -p "$log_dir"
  # One level of quoting, for the remote shell: each argument of cmd arrives as typed.
  remote="cd ~/$REMOTE_DIR && . ~/$REMOTE_VENV/bin/activate && exec$(printf ' %q' "${cmd[@]}")"
  say "running on $workers workers of $name: ${cmd[*]}"
  say "worker logs: $log_dir/worker-<i>.log"
  for ((i = 0; i < workers; i++)); do
    run_worker "$i" "$log_dir/worker-$i.log" "$remote" &
    pids+=($!)
  done
  for ((i = 0; i < workers; i++)); do
    if wait "${pids[i]}"; then status=0; else status=$?; fi
    if [[ $status != 0 ]]; then
      failed+=("$i")
      [[ $rc != 0 ]] || rc=$status
      printf 'tpu_run.sh: worker %s failed (exit %s), see %s\n' \
        "$i" "$status" "$log_dir/worker-$i.log" >&2
    fi
  done
  if [[ ${#failed[@]} -gt 0 ]]; then
    printf 'tpu_run.sh: %s of %s workers failed: %s\n' "${#failed[@]}" "$workers" "${failed[*]}" >&2
    return "$rc"
  fi
  say "all $workers workers finished; logs in $log_dir"
}

# all: delete on the way out, whatever happened (the exit status stays that of the failure).
on_exit_delete() {
  local rc=$?
  trap - EXIT
  if [[ $keep == 1 ]]; then
    say "keeping $name (--keep); delete it with: $0 delete --name $name --zone $zone"
  elif ! cmd_delete; then
    printf 'tpu_run.sh: deleting %s failed; check: gcloud compute tpus tpu-vm list --zone %s\n' \
      "$name" "$zone" >&2
  fi
  exit "$rc"
}

cmd_all() {
  trap on_exit_delete EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  cmd_create
  cmd_setup
  cmd_run
}

# ---- main --------------------------------------------------------------------------------

main() {
  [[ $# -gt 0 ]] || die_usage "give a subcommand"
  sub=$1
  shift
  local common="--name --zone --project"
  local create_opts="--accelerator-type --version --spot --preemptible"
  local run_opts="--log-dir --workers"
  case $sub in
    -h | --help) usage; exit 0 ;;
    create) parse_opts "$common $create_opts" "$@" ;;
    setup) parse_opts "$common --python" "$@" ;;
    run) parse_opts "$common $run_opts" "$@" ;;
    delete) parse_opts "$common" "$@" ;;
    all) parse_opts "$common $create_opts --python $run_opts --keep" "$@" ;;
    *) die_usage "unknown subcommand: $sub" ;;
  esac
  need "$name" --name
  need "$zone" --zone
  case $sub in
    create | all) need "$accel" --accelerator-type ;;
  esac
  case $sub in
    run | all) need_cmd ;;
    *) [[ ${#cmd[@]} -eq 0 ]] || die_usage "$sub takes no command after --" ;;
  esac
  "cmd_$sub"
}

sub=''
main "$@"
