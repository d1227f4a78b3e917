"""The uid registry: each grading run (scratch root) holds its own range, keeps it, and frees it when it ends."""

from __future__ import annotations

import pytest

from labhelpers.grading.sandbox import uids
from labhelpers.grading.sandbox.uids import FIRST_UID, UIDS_PER_RUN, run_first_uid, slot_uid


@pytest.fixture
def registry(monkeypatch, tmp_path):
    """A registry of its own in tmp_path, on a machine without accounts, subordinate ids or processes in the ranges.

    Returns the list of the uid ranges whose processes the registry killed: none here really is (the real ranges
    may be in use by sandboxes running now).
    """
    killed = []
    monkeypatch.setattr(uids, "UID_REGISTRY", tmp_path / "registry")
    monkeypatch.setattr(uids, "subordinate_ids", lambda: [])
    monkeypatch.setattr(uids, "has_account", lambda ids: False)
    monkeypatch.setattr(uids, "processes", lambda workdir, ids: [])
    monkeypatch.setattr(uids, "kill", lambda workdir, ids: killed.append(ids))
    for name in ("first", "second"):
        (tmp_path / name).mkdir()
    return killed


def test_two_runs_hold_two_ranges_and_a_run_keeps_its_own(registry, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    assert run_first_uid(first) == FIRST_UID
    assert run_first_uid(second) == FIRST_UID + UIDS_PER_RUN
    assert run_first_uid(first) == FIRST_UID
    assert (tmp_path / "registry" / "range-0").readlink() == first


def test_a_finished_run_frees_its_range_and_its_leftovers_are_killed(registry, tmp_path):
    run_first_uid(tmp_path / "first")
    (tmp_path / "first" / ".sandbox-uids").unlink()
    assert run_first_uid(tmp_path / "second") == FIRST_UID
    assert registry == [range(FIRST_UID, FIRST_UID + UIDS_PER_RUN)]


def test_subordinate_ids_accounts_and_others_processes_are_skipped(registry, monkeypatch, tmp_path):
    # Range 0 is partly a subordinate range, range 2 has an account, range 3 someone else's processes.
    monkeypatch.setattr(uids, "subordinate_ids", lambda: [(FIRST_UID + 10, FIRST_UID + UIDS_PER_RUN + 1)])
    monkeypatch.setattr(uids, "has_account", lambda ids: FIRST_UID + 2 * UIDS_PER_RUN in ids)
    monkeypatch.setattr(uids, "processes", lambda workdir, ids: [1] if FIRST_UID + 3 * UIDS_PER_RUN in ids else [])
    assert run_first_uid(tmp_path / "first") == FIRST_UID + 4 * UIDS_PER_RUN


def test_each_slot_and_view_has_its_own_uid(registry, tmp_path):
    made = [slot_uid(tmp_path / "first", slot, view) for slot in (0, 1, 31) for view in ("notebook", "probe")]
    assert made == [FIRST_UID + offset for offset in (0, 1, 2, 3, 62, 63)]


def test_subordinate_ids_are_read_from_both_tables(tmp_path):
    (tmp_path / "subuid").write_text("alice:100000:65536\nbroken line\n")
    (tmp_path / "subgid").write_text("alice:300000:10\n")
    tables = (str(tmp_path / "subuid"), str(tmp_path / "subgid"), str(tmp_path / "missing"))
    assert uids.subordinate_ids(tables) == [(100_000, 165_536), (300_000, 300_010)]
