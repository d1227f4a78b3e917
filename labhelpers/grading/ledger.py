"""The grading ledger, OUT_DIR/status.json: what each submission's grade depends on and what its status column says.

A grading run resumes from it: a submission whose key (its notebook, submission time, the instructor's source and
release, the version of what decides a grade, the grading settings) is the one recorded, and whose result is still on
disk, is not graded again. The file is
rewritten whole through a temporary file, so a run stopped at any moment leaves the previous ledger or the new one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

STATUS_FILE = "status.json"
PACKAGE = Path(__file__).resolve().parent.parent
"""The lab's package folder (labhelpers/)."""
GRADE_DECIDING = (
    "__init__.py",
    "assignment.py",
    "seeding.py",
    "checks",
    "probes",
    "grading/calls.py",
    "grading/course.py",
    "grading/deadlines.py",
    "grading/judging.py",
    "grading/matching",
    "grading/partial.py",
    "grading/peft_dora_stub.py",
    "grading/probing.py",
    "grading/sandbox",
    "grading/worker.py",
)
"""What a grade depends on in the package (files and folders, relative to it): the judges (checks/), the probes and
their seeding, and the grading code that decides which answers are graded, how they run and what they score. Any
other change (figures, training, feedback wording, this ledger, the report) regrades nobody."""
ORACLES = ("peft", "torch", "nbgrader")
"""The libraries whose versions a grade depends on: PEFT and PyTorch compute the references, nbgrader the release and
the gradebook."""


@dataclass
class LedgerEntry:
    """One student's line of the ledger.

    Attributes:
        status: what was unusual, one sentence each, for the status column of grades.csv (empty when nothing was).
        key: what the grade depends on (see submission_key).
        seconds: the worker's time on the submission; None when no worker graded it (no gradable notebook, or a
            worker that stopped or ran out of time).
        phases: the worker's seconds in each step (notebook, probes, judge, feedback); None as for `seconds`.
    """

    status: list[str]
    key: str
    seconds: float | None = None
    phases: dict[str, float] | None = None

    def to_json(self) -> dict:
        """Return the entry as status.json holds it (`seconds` and `phases` only when a worker graded it)."""
        record: dict = {"status": self.status, "key": self.key}
        if self.seconds is not None:
            record["seconds"] = self.seconds
        if self.phases is not None:
            record["phases"] = self.phases
        return record

    @classmethod
    def from_json(cls, record: object) -> LedgerEntry | None:
        """Read one entry of status.json; None when it is not one this module wrote (its student is graded again)."""
        if not isinstance(record, dict) or not isinstance(record.get("key"), str):
            return None
        status = record.get("status", [])
        if not isinstance(status, list) or not all(isinstance(line, str) for line in status):
            return None
        seconds, phases = record.get("seconds"), record.get("phases")
        if seconds is not None and not isinstance(seconds, (int, float)):
            return None
        if phases is not None and not isinstance(phases, dict):
            return None
        return cls(status, record["key"], seconds, phases)


@dataclass
class Ledger:
    """Every student's entry of one grading folder, by student id.

    Attributes:
        path: the status.json file.
        entries: {student_id: entry}.
    """

    path: Path
    entries: dict[str, LedgerEntry] = field(default_factory=dict)

    @classmethod
    def read(cls, out_dir: Path) -> Ledger:
        """Read OUT_DIR/status.json; an absent or unreadable file is an empty ledger (everything is graded again)."""
        path = out_dir / STATUS_FILE
        try:
            records = json.loads(path.read_text()) if path.is_file() else {}
        except ValueError:
            records = {}
        entries = {}
        for student_id, record in records.items() if isinstance(records, dict) else ():
            entry = LedgerEntry.from_json(record)
            if entry is not None:
                entries[student_id] = entry
        return cls(path, entries)

    def write(self) -> None:
        """Write the ledger to its file at once (a temporary file renamed over it)."""
        tmp = self.path.with_name(f"{self.path.name}.tmp")
        records = {student_id: entry.to_json() for student_id, entry in self.entries.items()}
        tmp.write_text(json.dumps(records, indent=1, sort_keys=True))
        tmp.replace(self.path)

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, student_id: str) -> bool:
        return student_id in self.entries

    def get(self, student_id: str) -> LedgerEntry | None:
        """Return the student's entry, or None."""
        return self.entries.get(student_id)

    def status(self, student_id: str) -> list[str]:
        """Return the student's status lines (none for a student not in the ledger)."""
        entry = self.entries.get(student_id)
        return list(entry.status) if entry else []

    def record(self, student_id: str, entry: LedgerEntry) -> None:
        """Set the student's entry."""
        self.entries[student_id] = entry

    def forget(self, student_id: str) -> None:
        """Drop the student's entry: the next run grades them again."""
        self.entries.pop(student_id, None)

    def keep_only(self, student_ids: Iterable[str]) -> None:
        """Drop the entries of students who are not in `student_ids` (not in this class)."""
        wanted = set(student_ids)
        self.entries = {student_id: entry for student_id, entry in self.entries.items() if student_id in wanted}

    def is_current(self, student_id: str, key: str, result: Path | None) -> bool:
        """Tell whether the student's grade is current: same key as recorded, and its worker's result still there.

        Args:
            student_id: the student.
            key: the submission's key now (submission_key).
            result: the worker's result file of the submission, or None when there is nothing to grade (no valid
                notebook: then the key alone decides).
        """
        entry = self.entries.get(student_id)
        return entry is not None and entry.key == key and (result is None or result.is_file())


def submission_key(notebook: Path | None, timestamp: str | None, source: bytes, lab: str) -> str:
    """Return what a grade depends on: the notebook, its submission time, the instructor's source, the lab's version.

    Args:
        notebook: the submitted notebook, or None when there is none to grade.
        timestamp: nbgrader's submission time, or None.
        source: the instructor's source notebook, as bytes.
        lab: lab_version().

    Returns:
        A hex SHA-256 digest.
    """
    digest = hashlib.sha256(notebook.read_bytes() if notebook else b"")
    digest.update(f"\0{timestamp}\0{lab}\0".encode())
    digest.update(source)
    return digest.hexdigest()


def deciding_files(package: Path = PACKAGE) -> list[Path]:
    """Return the package's Python files that a grade depends on (GRADE_DECIDING), sorted."""
    files = set()
    for part in GRADE_DECIDING:
        path = package / part
        files |= set(path.rglob("*.py")) if path.is_dir() else {path} if path.is_file() else set()
    return sorted(files)


def lab_version(package: Path = PACKAGE) -> str:
    """Return the version of what decides a grade: the oracles' versions and a digest of the deciding sources.

    Args:
        package: the lab's package folder (a copy of it, in tests).

    Returns:
        E.g. "peft 0.17.1, torch 2.8.0, nbgrader 0.9.6+1a2b3c4d5e6f": a judge's edit changes it, a figure's does not.
    """
    digest = hashlib.sha256()
    for path in deciding_files(package):
        digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes())
    oracles = ", ".join(f"{name} {version(name)}" for name in ORACLES)
    return f"{oracles}+{digest.hexdigest()[:12]}"
