#!/usr/bin/env bash
# Dry run of rlif.sbatch on this machine, without SLURM or Ray: a fake allocation of RLIF_DRY_NODES nodes and the
# stub scontrol/srun/hostname/ray/python in stubs/. The config check is real (`verl-rlif check` with your Python);
# Ray, the per-node plugin checks and main_ppo are simulated. Prints the job's log and every command it issued.
#
#   RLIF_CONFIG=math_7b_fsdp scripts/slurm/dry-run.sh [Hydra overrides...]
#   RLIF_DRY_NODES=4 RLIF_CONFIG=math_32b_megatron scripts/slurm/dry-run.sh preset=vote_only
#
# Simulate failures with the stubs' knobs: STUB_BAD_NODES="node-2" (no plugin there), STUB_ALIVE="node-1"
# (others never join; set RLIF_JOIN_TIMEOUT_S=5), STUB_RAY_FAIL="node-2" (its ray start dies).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
real_python="$(command -v "${RLIF_PYTHON:-python}")" || { echo "no ${RLIF_PYTHON:-python} on PATH" >&2; exit 2; }
nodes=()
for i in $(seq 1 "${RLIF_DRY_NODES:-2}"); do nodes+=("node-$i"); done
work="$(mktemp -d)"
status=1
# A failed run's error points into $work/logs: keep them then, remove them after a clean run.
trap 'if (( status == 0 )); then rm -rf "$work"; else echo "(logs kept in $work/logs)" >&2; fi' EXIT
export SLURM_JOB_NODELIST="node-[1-${#nodes[@]}]" SLURM_JOB_ID="dry-run" STUB_NODES="${nodes[*]}"
export STUB_LOG="$work/commands.log" STUB_REAL_PYTHON="$real_python" STUB_BLOCK_S=60
export RLIF_PYTHON=python RLIF_RAY=ray RLIF_POLL_S="${RLIF_POLL_S:-0.2}" RLIF_LOG_DIR="$work/logs"
status=0
PATH="$here/stubs:$PATH" bash "$here/rlif.sbatch" "$@" || status=$?
echo
echo "== commands the job issued (srun steps run on the node after -w) =="
cat "$STUB_LOG"
echo "== job exit status: $status =="
exit "$status"
