"""The files that grade a class on many machines (deploy/k8s, deploy/slurm), run by no test here (no cluster):
their commands parse as dora-lab's, every shard of N is graded, and the pods get what bubblewrap needs.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from labhelpers import cli
from labhelpers.cli.scale import selection_from
from labhelpers.config import PROJECT_ROOT
from labhelpers.grading.selection import Shard

DEPLOY = PROJECT_ROOT / "deploy"


def _job(name: str) -> dict:
    return yaml.safe_load((DEPLOY / "k8s" / name).read_text())


def _container(job: dict) -> dict:
    (container,) = job["spec"]["template"]["spec"]["containers"]
    return container


def _mounts(job: dict) -> dict[str, str]:
    return {mount["name"]: mount["mountPath"] for mount in _container(job)["volumeMounts"]}


def _dora_lab(script: str, command: str, variables: dict[str, str]):
    """Parse the `dora-lab COMMAND …` of a shell script, its variables replaced, as dora-lab's parser does."""
    code = "\n".join(line for line in script.replace("\\\n", " ").splitlines() if not line.lstrip().startswith("#"))
    line = next(part for part in re.split(r"&&|\n", code) if f"dora-lab {command}" in part)
    for name, value in variables.items():
        line = line.replace(f'"${name}"', value).replace(f"${name}", value)
    words = shlex.split(line)
    return cli._parser().parse_args(words[words.index("dora-lab") + 1 :])


@pytest.fixture(scope="module")
def values() -> dict:
    return yaml.safe_load((DEPLOY / "z2jh" / "values.yaml").read_text())


def test_the_indexed_job_grades_every_shard_of_n_once():
    job = _job("grade-job.yaml")
    spec, env = job["spec"], {item["name"]: item["value"] for item in _container(job)["env"]}
    count = int(env["SHARDS"])
    assert spec["completionMode"] == "Indexed" and spec["completions"] == spec["parallelism"] == count
    shards = set()
    for index in range(count):
        options = _dora_lab(
            _container(job)["args"][0], "grade", {"JOB_COMPLETION_INDEX": str(index), "SHARDS": str(count)}
        )
        selection, secret = selection_from(options)
        shards.add(selection.shard)
        mounts = _mounts(job)
        assert secret.parent == Path(mounts["secret"]) and options.out.is_relative_to(mounts["scratch"])
        assert options.submissions.is_relative_to(mounts["grading"]) and options.course == Path(mounts["grading"])
    assert shards == {Shard(index, count) for index in range(count)}


def test_the_grading_pods_get_what_bubblewrap_needs_as_the_instructors_pods_do(values):
    job = _job("grade-job.yaml")
    (override,) = values["hub"]["config"]["KubeSpawner"]["group_overrides"].values()
    spawner = override["spawner_override"]
    assert _container(job)["securityContext"] == spawner["container_security_context"]
    assert job["spec"]["template"]["spec"]["hostUsers"] == spawner["extra_pod_config"]["hostUsers"] is False
    image = values["singleuser"]["image"]
    assert _container(job)["image"] == f"{image['name']}:{image['tag']}" == _container(_job("merge-job.yaml"))["image"]
    env = {item["name"]: item["value"] for item in _container(job)["env"]}
    # Grading without --run-notebooks runs no notebook: it needs no data, and the pods get none.
    assert "--run-notebooks" not in _container(job)["args"][0] and "LAB_DATA_DIR" not in env
    assert "sst2" not in _mounts(job)


def test_the_merge_job_merges_what_the_grading_pods_copied_out():
    grade, merge = _container(_job("grade-job.yaml"))["args"][0], _container(_job("merge-job.yaml"))["args"][0]
    assert 'cp -a /scratch/shard "/srv/grading/shards/$JOB_COMPLETION_INDEX"' in grade
    assert "cp -a /srv/grading/shards /scratch/shards" in merge
    options = _dora_lab(merge, "merge", {})
    assert options.shards == [Path("/scratch/shards/*")] and options.out == Path("/scratch/class")


@pytest.mark.parametrize("script", ["grade-array.sh", "merge.sh", "submit.sh"])
def test_the_slurm_scripts_are_valid_bash(script):
    subprocess.run(["bash", "-n", str(DEPLOY / "slurm" / script)], check=True)
    assert os.access(DEPLOY / "slurm" / script, os.X_OK)


def test_each_slurm_array_task_grades_its_shard_on_local_disk():
    script = (DEPLOY / "slurm" / "grade-array.sh").read_text()
    first, last = map(int, re.search(r"^#SBATCH --array=(\d+)-(\d+)$", script, re.MULTILINE).groups())
    count = last - first + 1
    for index in range(first, last + 1):
        variables = {
            "SLURM_ARRAY_TASK_ID": str(index),
            "SLURM_ARRAY_TASK_COUNT": str(count),
            "SLURM_CPUS_PER_TASK": "4",
        }
        variables |= {"COURSE": "/shared/dora-lab", "SECRET": "/shared/secret", "LOCAL": "/tmp/shard"}
        selection, secret = selection_from(_dora_lab(script, "grade", variables))
        assert selection.shard == Shard(index, count) and secret == Path("/shared/secret")
    assert "dora-lab merge" in (DEPLOY / "slurm" / "merge.sh").read_text()
    assert 'sbatch --parsable --dependency="afterok:$grading"' in (DEPLOY / "slurm" / "submit.sh").read_text()
