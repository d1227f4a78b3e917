#!/bin/bash
# Grade a class on Slurm: the shards as one array job, the merge once they have all succeeded (docs/scale.md).
# NOT RUN BY THE PROJECT'S TESTS (no cluster there). Run it from this folder: ./submit.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
grading=$(sbatch --parsable "$here/grade-array.sh")
merging=$(sbatch --parsable --dependency="afterok:$grading" "$here/merge.sh")
echo "grading: job $grading (one task per shard); merge: job $merging, after every shard succeeded"
