#!/bin/bash
# The second step of deploy/slurm/grade-array.sh (docs/scale.md): merge every shard's folder into one class's
# grading folder on local disk, then copy it to shared storage. NOT RUN BY THE PROJECT'S TESTS (no cluster there).
#SBATCH --job-name=dora-lab-merge
#SBATCH --cpus-per-task=1
#SBATCH --mem=4G
#SBATCH --time=01:00:00
#SBATCH --output=dora-lab-merge-%j.log
set -euo pipefail

SHARDS_DIR=${SHARDS_DIR:-/shared/dora-lab/shards}
CLASS_DIR=${CLASS_DIR:-/shared/dora-lab/graded}  # copy it to the local disk you grade by hand on (docs/grading.md)

LOCAL=${TMPDIR:-/tmp}/dora-lab-merge-$SLURM_JOB_ID
trap 'rm -rf "$LOCAL"' EXIT
mkdir -p "$LOCAL"
cp -a "$SHARDS_DIR" "$LOCAL/shards"
dora-lab merge "$LOCAL"/shards/* --out "$LOCAL/class"
rm -rf "$CLASS_DIR"
cp -a "$LOCAL/class" "$CLASS_DIR"
