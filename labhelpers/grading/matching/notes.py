"""What was repaired, one short clause each, in a fixed order: the notes an instructor reads in the status column."""

from __future__ import annotations

from labhelpers.grading.matching.release import ReleaseCell

LISTED = 6  # names a note lists before "and N more"


def listed(names: list[str], limit: int = LISTED) -> str:
    """Return the first `limit` names, comma-separated, and how many more there are."""
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


class Notes:
    """Notes keyed by kind, printed in a fixed order whatever order they were found in."""

    ORDER = (
        "nothing",
        "unreadable",
        "metadata",
        "split",
        "merged",
        "duplicates",
        "versions",
        "moved",
        "types",
        "content",
        "found",
        "images",
        "edited",
        "deleted",
        "missing",
    )

    def __init__(self) -> None:
        self._notes: dict[str, list[str]] = {}
        self._duplicates: dict[int, list] = {}  # release index -> [its release cell, copies dropped]

    def add(self, kind: str, text: str) -> None:
        """Add one note of `kind` (one of ORDER), after the notes of that kind already added."""
        self._notes.setdefault(kind, []).append(text)

    def add_names(self, kind: str, one: str, many: str, names: list[str], limit: int = LISTED) -> None:
        """Add one note naming `names`: `one` formatted with the name, or `many` with the first `limit` of them."""
        if len(names) == 1:
            self.add(kind, one.format(names[0]))
        elif names:
            self.add(kind, many.format(listed(names, limit)))

    def duplicate(self, cell: ReleaseCell) -> None:
        """Count one dropped copy of a release cell (all copies make one note, however many were pasted)."""
        self._duplicates.setdefault(cell.index, [cell, 0])[1] += 1

    def drop(self, kind: str) -> None:
        """Forget the notes of `kind`."""
        self._notes.pop(kind, None)

    def ordered(self) -> list[str]:
        """Return every note, kinds in ORDER, the dropped copies summed up in one "duplicates" note."""
        notes = {kind: list(texts) for kind, texts in self._notes.items()}
        duplicated = [self._duplicates[index] for index in sorted(self._duplicates)]
        if len(duplicated) == 1:
            ((cell, copies),) = duplicated
            what = f"{cell.kind} {cell.grade_id}"
            notes["duplicates"] = [
                f"duplicate {what} dropped" if copies == 1 else f"{copies} duplicates of {what} dropped"
            ]
        elif duplicated:
            notes["duplicates"] = [f"duplicates dropped: {listed([f'{c.kind} {c.grade_id}' for c, _ in duplicated])}"]
        return [text for kind in self.ORDER for text in notes.get(kind, [])]
