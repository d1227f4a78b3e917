#!/bin/bash
# A class graded on a Slurm cluster (docs/scale.md): one array task per shard, each `dora-lab grade --shard i/N` on
# its node's local disk, its finished folder copied to shared storage; then deploy/slurm/merge.sh. NOT RUN BY THE
# PROJECT'S TESTS (no cluster there): tests/unit/test_deploy_scale.py checks its syntax and that its command parses
# as dora-lab's. Submit both with deploy/slurm/submit.sh.
#
# The nodes need the lab's environment (`pip install` of its wheel, as deploy/z2jh/Dockerfile does), bubblewrap
# (0.8.0 or later) and unprivileged user namespaces: `dora-lab grade` says what is missing, and the fix, when it
# cannot build a sandbox. Set the paths below for your cluster; /shared must be seen by every node.
#SBATCH --job-name=dora-lab-grade
#SBATCH --array=0-7
#SBATCH --cpus-per-task=4
#SBATCH --mem=16G
#SBATCH --time=04:00:00
#SBATCH --output=dora-lab-grade-%A_%a.log
set -euo pipefail

COURSE=${COURSE:-/shared/dora-lab}                 # the course folder: solutions/dora/dora_lab.ipynb, submitted/
SECRET=${SECRET:-/shared/dora-lab/grading_secret}  # one secret for every shard: openssl rand -hex 32 > grading_secret
SHARDS_DIR=${SHARDS_DIR:-/shared/dora-lab/shards}  # where each finished shard folder is copied
# With --run-notebooks (each whole notebook run again for its feedback page), also export LAB_DATA_DIR=<SST-2 folder>.
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=$SLURM_CPUS_PER_TASK

# The gradebook is SQLite in WAL mode, which does not work on a network filesystem: grade on the node's own disk.
LOCAL=${TMPDIR:-/tmp}/dora-lab-shard-$SLURM_ARRAY_JOB_ID-$SLURM_ARRAY_TASK_ID
trap 'rm -rf "$LOCAL"' EXIT
dora-lab grade "$COURSE/submitted" --course "$COURSE" --out "$LOCAL" \
    --shard "$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT" --secret "$SECRET" --jobs "$SLURM_CPUS_PER_TASK" --quiet
mkdir -p "$SHARDS_DIR"
rm -rf "${SHARDS_DIR:?}/$SLURM_ARRAY_TASK_ID"
cp -a "$LOCAL" "$SHARDS_DIR/$SLURM_ARRAY_TASK_ID"
