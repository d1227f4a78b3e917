"""What one run grades: a stable shard of the class, chosen students, chosen tests, and clear refusals."""

from __future__ import annotations

import random

import pytest

from labhelpers.errors import LabGradingError
from labhelpers.grading.selection import Selection, Shard, parse_shard

CLASS = [f"student{n:03d}" for n in range(300)]
TESTS = ["decompose_weight_matches_definition", "dora_linear_matches_peft"]


def test_the_shards_split_the_class_into_disjoint_parts_that_cover_it():
    parts = [Selection(Shard(index, 3)).in_shard(CLASS) for index in range(3)]
    assert sorted(sum(parts, [])) == CLASS
    assert all(80 <= len(part) <= 120 for part in parts), [len(part) for part in parts]  # about a third each


def test_a_students_shard_depends_on_their_id_not_on_the_listing():
    shuffled = random.Random(0).sample(CLASS, len(CLASS))
    for index in range(3):
        shard = Selection(Shard(index, 3))
        assert sorted(shard.in_shard(shuffled)) == sorted(shard.in_shard(CLASS[:150])) + sorted(
            shard.in_shard(CLASS[150:])
        )
    # The hash is fixed (SHA-256), not Python's per-process hash(): the same student lands in the same shard anywhere.
    assert [Shard(i, 3).holds("ana") for i in range(3)] == [False, True, False]


@pytest.mark.parametrize(
    "text, expected",
    [("0/3", Shard(0, 3)), ("2/3", Shard(2, 3)), (" 1 / 2 ", Shard(1, 2)), ("0/1", Shard(0, 1))],
)
def test_a_shard_is_written_i_of_n(text, expected):
    assert parse_shard(text) == expected and str(expected) == text.replace(" ", "")


@pytest.mark.parametrize("text", ["3/3", "1", "a/b", "-1/3", "0/0", "1/3/4"])
def test_a_shard_that_is_not_i_of_n_is_refused_saying_how_to_write_it(text):
    with pytest.raises(LabGradingError, match=r"i/N"):
        parse_shard(text)


def test_chosen_students_are_checked_against_the_class_and_the_shard():
    assert Selection().chosen(CLASS, TESTS) == CLASS
    assert Selection(students=("student007", "student001")).chosen(CLASS, TESTS) == ["student001", "student007"]
    with pytest.raises(LabGradingError, match="--student nobody: not in the submissions folder"):
        Selection(students=("nobody",)).chosen(CLASS, TESTS)
    elsewhere = next(s for s in CLASS if not Shard(0, 3).holds(s))
    with pytest.raises(LabGradingError, match=f"--student {elsewhere}: not in shard 0/3"):
        Selection(Shard(0, 3), students=(elsewhere,)).chosen(CLASS, TESTS)


def test_chosen_tests_must_be_the_assignments():
    assert Selection(only=(TESTS[1],)).chosen(CLASS, TESTS) == CLASS
    with pytest.raises(LabGradingError, match="--only typo: no such test; the assignment's tests are decompose"):
        Selection(only=("typo",)).chosen(CLASS, TESTS)
