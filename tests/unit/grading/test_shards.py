"""Shard folders: the shared secret, the record of what a shard was graded with, and no mixing of classes."""

from __future__ import annotations

import json

import pytest

from labhelpers.errors import LabGradingError
from labhelpers.grading.calls import SECRET_FILE
from labhelpers.grading.ledger import STATUS_FILE
from labhelpers.grading.selection import Shard
from labhelpers.grading.shards import SHARD_FILE, ShardRecord, adopt_secret, claim_folder

SECRET = "ab" * 32


@pytest.fixture
def folder(tmp_path):
    """A grading folder with its course's source and release (the record's digests read them)."""
    for part in ("solutions", "notebooks"):
        notebook = tmp_path / "out" / "course" / part / "dora" / "dora_lab.ipynb"
        notebook.parent.mkdir(parents=True)
        notebook.write_text(f'{{"{part}": 1}}')
    return tmp_path / "out"


def test_a_shard_adopts_the_secret_from_a_file_or_a_shard_folder(folder, tmp_path):
    (tmp_path / "grading_secret").write_text(SECRET + "\n")
    adopt_secret(folder, tmp_path / "grading_secret")
    assert (folder / SECRET_FILE).read_text().strip() == SECRET and (folder / SECRET_FILE).stat().st_mode & 0o077 == 0
    second = tmp_path / "second"
    second.mkdir()
    adopt_secret(second, folder)  # the first shard's folder
    assert (second / SECRET_FILE).read_text() == (folder / SECRET_FILE).read_text()
    adopt_secret(folder, tmp_path / "grading_secret")  # the same again: nothing to do


@pytest.mark.parametrize(
    "text, phrase",
    [("not hex", "not a readable secret"), ("abcd", "2 bytes; a secret needs at least 16"), (None, "not a readable")],
    ids=["not-hex", "too-short", "absent"],
)
def test_a_secret_that_is_not_one_is_refused_saying_how_to_make_one(folder, tmp_path, text, phrase):
    secret = tmp_path / "grading_secret"
    if text is not None:
        secret.write_text(text)
    with pytest.raises(LabGradingError, match=phrase):
        adopt_secret(folder, secret)


def test_a_folder_graded_with_another_secret_is_not_given_a_new_one(folder, tmp_path):
    (folder / SECRET_FILE).write_text("cd" * 32 + "\n")
    (tmp_path / "grading_secret").write_text(SECRET)
    with pytest.raises(LabGradingError, match="graded with another secret"):
        adopt_secret(folder, tmp_path / "grading_secret")
    assert (folder / SECRET_FILE).read_text() == "cd" * 32 + "\n"


def test_the_record_names_files_and_secret_by_digest_and_round_trips(folder):
    (folder / SECRET_FILE).write_text(SECRET + "\n")
    record = ShardRecord.of(folder, Shard(1, 3), "version")
    claim_folder(folder, record)
    assert ShardRecord.read(folder) == record and record.part == Shard(1, 3)
    assert SECRET not in (folder / SHARD_FILE).read_text()
    assert json.loads((folder / SHARD_FILE).read_text())["shard"] == "1/3"


def test_shards_and_whole_classes_never_share_a_folder(folder):
    (folder / SECRET_FILE).write_text(SECRET + "\n")
    claim_folder(folder, ShardRecord.of(folder, Shard(1, 3), "v"))
    claim_folder(folder, ShardRecord.of(folder, Shard(1, 3), "v"))  # the same shard resumes
    with pytest.raises(LabGradingError, match="holds shard 1/3; grade shard 2/3 into its own folder"):
        claim_folder(folder, ShardRecord.of(folder, Shard(2, 3), "v"))
    with pytest.raises(LabGradingError, match="holds shard 1/3 of a class"):
        claim_folder(folder, None)
    (folder / SHARD_FILE).unlink()
    (folder / STATUS_FILE).write_text("{}")
    with pytest.raises(LabGradingError, match="holds a whole class's grades"):
        claim_folder(folder, ShardRecord.of(folder, Shard(0, 3), "v"))


def test_a_folder_that_is_no_shard_is_named_as_such(tmp_path):
    with pytest.raises(LabGradingError, match="is not a shard's folder"):
        ShardRecord.read(tmp_path)
