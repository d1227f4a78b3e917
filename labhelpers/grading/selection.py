"""Which part of a class one grading run grades: a shard of the students, some students, some tests.

`--shard i/N` splits the class into N stable parts by a hash of each student id (never by the folder's listing
order, so that every machine computes the same part from its own listing); `--student ID…` regrades just those
students; `--only GRADE_ID…` regrades just those tests of students already graded.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from labhelpers.errors import LabGradingError


@dataclass(frozen=True)
class Shard:
    """Part `index` of `count` of a class (0 <= index < count).

    Attributes:
        index: this part's number, from 0 (Kubernetes' JOB_COMPLETION_INDEX; a Slurm array's SLURM_ARRAY_TASK_ID).
        count: how many parts the class is split into.
    """

    index: int
    count: int

    def __post_init__(self):
        if self.count < 1 or not 0 <= self.index < self.count:
            raise LabGradingError(
                f"--shard {self.index}/{self.count}: write i/N with 0 <= i < N, e.g. 0/3, 1/3 and 2/3 for three "
                "machines"
            )

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def holds(self, student_id: str) -> bool:
        """Tell whether the student belongs to this shard (the first 8 bytes of SHA-256 of the id, modulo count)."""
        digest = hashlib.sha256(student_id.encode()).digest()
        return int.from_bytes(digest[:8], "big") % self.count == self.index


def parse_shard(text: str) -> Shard:
    """Parse "i/N" (e.g. "0/3") into a Shard; raise LabGradingError saying how to write it."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match:
        raise LabGradingError(f"--shard {text!r}: write i/N, e.g. 0/3 for the first of three machines")
    return Shard(int(match[1]), int(match[2]))


@dataclass(frozen=True)
class Selection:
    """What one grading run grades of the class.

    Attributes:
        shard: grade only this shard's students (None: the whole class).
        students: regrade only these students, whether or not anything changed (empty: every student whose
            submission, the instructor's source or release, what decides a grade or the settings changed).
        only: regrade only these tests (grade ids) of students graded before, keeping the notebook's run and the
            other tests' verdicts (empty: every test).
    """

    shard: Shard | None = None
    students: tuple[str, ...] = ()
    only: tuple[str, ...] = ()

    def in_shard(self, student_ids: Iterable[str]) -> list[str]:
        """Return the ids of the shard (all of them without one), in the order given."""
        return [student_id for student_id in student_ids if self.shard is None or self.shard.holds(student_id)]

    def chosen(self, student_ids: Sequence[str], grade_ids: Sequence[str]) -> list[str]:
        """Return the students this run (re)grades, checking that every id asked for exists.

        Args:
            student_ids: every student of the class, in order.
            grade_ids: every autograded test of the assignment.

        Returns:
            The ids of the shard, narrowed to `students` when some were given.
        """
        unknown_tests = [grade_id for grade_id in self.only if grade_id not in grade_ids]
        if unknown_tests:
            raise LabGradingError(
                f"--only {' '.join(unknown_tests)}: no such test; the assignment's tests are {', '.join(grade_ids)}"
            )
        ours = self.in_shard(student_ids)
        if not self.students:
            return ours
        unknown = [student for student in self.students if student not in student_ids]
        if unknown:
            raise LabGradingError(
                f"--student {' '.join(unknown)}: not in the submissions folder (it has {len(student_ids)} students; "
                "the id is the name of the student's folder)"
            )
        elsewhere = [student for student in self.students if student not in ours]
        if elsewhere:
            raise LabGradingError(f"--student {' '.join(elsewhere)}: not in shard {self.shard}; regrade in their own")
        return [student for student in ours if student in self.students]


WHOLE_CLASS = Selection()
"""Every student of the class whose grade is not current, every test (grading's default)."""
