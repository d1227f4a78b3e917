"""Submissions in either layout, and nbgrader's exchange as `dora-lab` drives it (release, collect, return).

The finder's rules are a table of named cases. The round trip uses nbgrader's real exchange in a temporary folder,
with nbgrader's own student-side transfers (fetch, submit, fetch feedback: what the Assignments tab calls), all as
this user; tests/test_hub.py runs the same flow with real users on a real JupyterHub.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labhelpers.course import ASSIGNMENT, COURSE_ID, NOTEBOOK, SOURCE_NOTEBOOK
from labhelpers.errors import LabGradingError
from labhelpers.grading.exchange import (
    SECRET_FILE,
    TIMESTAMP_FILE,
    collect_submissions,
    find_submissions,
    release_to_exchange,
    return_feedback,
)

NB = "{}"  # the finder never parses a notebook: validity is the grader's check
WHEN = "2026-11-29 12:00:00.000000 UTC"


def build(root: Path, layout: dict[str, str | None]) -> None:
    """Create `layout` under `root`: {relative path: text, "->target" for a link, or None for an empty folder}."""
    for relative, content in layout.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if content is None:
            path.mkdir()
        elif content.startswith("->"):
            path.symlink_to(content[2:])
        else:
            path.write_text(content)


# name, layout, expected [(student_id, notebook or None, timestamp or None, [problem fragments])]
CASES = [
    ("plain", {"ana/dora_lab.ipynb": NB}, [("ana", "ana/dora_lab.ipynb", None, [])]),
    (
        "nbgrader_collected",
        {"ana/dora/dora_lab.ipynb": NB, "ana/dora/timestamp.txt": WHEN, "ana/dora/submission_secret.txt": "s"},
        [("ana", "ana/dora/dora_lab.ipynb", WHEN, [])],
    ),
    (
        "plain_renamed",
        {"ana/lab3.ipynb": NB},
        [("ana", "ana/lab3.ipynb", None, ["notebook named lab3.ipynb, graded as dora_lab.ipynb"])],
    ),
    (
        "collected_renamed",
        {"ana/dora/copy.ipynb": NB},
        [("ana", "ana/dora/copy.ipynb", None, ["notebook named dora/copy.ipynb, graded as dora_lab.ipynb"])],
    ),
    (
        "right_name_beside_others",
        {"ana/dora_lab.ipynb": NB, "ana/scratch.ipynb": NB},
        [("ana", "ana/dora_lab.ipynb", None, [])],
    ),
    (
        "several_others",
        {"ana/a.ipynb": NB, "ana/b.ipynb": NB},
        [("ana", None, None, ["no dora_lab.ipynb and 2 other notebooks: cannot tell which to grade"])],
    ),
    ("empty_folder", {"ana": None}, [("ana", None, None, ["no notebook submitted"])]),
    (
        "notebook_is_a_link",
        {"ana/dora_lab.ipynb": "->/etc/passwd"},
        [("ana", None, None, ["dora_lab.ipynb is not a regular file (links are not followed)"])],
    ),
    (
        "student_folder_is_a_link",
        {"ana": "->/etc"},
        [("ana", None, None, ["ana/ is a link (links are not followed)"])],
    ),
    (
        "assignment_folder_is_a_link",
        {"ana/dora": "->/etc"},
        [("ana", None, None, ["dora/ is a link (links are not followed)", "no notebook submitted"])],
    ),
    (
        "unusable_folder_name",
        {"Ana Smith!/dora_lab.ipynb": NB},
        [("Ana_Smith_", "Ana Smith!/dora_lab.ipynb", None, ["'Ana Smith!' is not a usable student id"])],
    ),
    (
        "hidden_folders_and_files_are_not_students",
        {".ipynb_checkpoints/dora_lab.ipynb": NB, "notes.txt": "x", "ana/dora_lab.ipynb": NB},
        [("ana", "ana/dora_lab.ipynb", None, [])],
    ),
    (
        "both_layouts_nbgrader_wins",
        {"ana/dora_lab.ipynb": NB, "ana/dora/dora_lab.ipynb": NB},
        [("ana", "ana/dora/dora_lab.ipynb", None, ["ignored dora_lab.ipynb beside it"])],
    ),
    (
        "unreadable_timestamp",
        {"ana/dora/dora_lab.ipynb": NB, "ana/dora/timestamp.txt": "yesterday, roughly"},
        [("ana", "ana/dora/dora_lab.ipynb", None, ["timestamp.txt holds 'yesterday, roughly', not a time"])],
    ),
    (
        "students_sorted_each_on_its_own",
        {"ben/dora_lab.ipynb": NB, "ana/dora/dora_lab.ipynb": NB, "cat": None},
        [
            ("ana", "ana/dora/dora_lab.ipynb", None, []),
            ("ben", "ben/dora_lab.ipynb", None, []),
            ("cat", None, None, ["no notebook submitted"]),
        ],
    ),
]


@pytest.mark.parametrize("layout, expected", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_find_submissions(tmp_path, layout, expected):
    build(tmp_path, layout)
    found = find_submissions(tmp_path)
    assert [submission.student_id for submission in found] == [row[0] for row in expected]
    for submission, (_, notebook, timestamp, problems) in zip(found, expected):
        assert submission.notebook == (tmp_path / notebook if notebook else None)
        assert submission.timestamp == timestamp
        assert len(submission.problems) == len(problems), submission.problems
        for problem, fragment in zip(submission.problems, problems):
            assert fragment in problem


@pytest.mark.parametrize(
    "layout, files",
    [
        (
            {"ana/dora/dora_lab.ipynb": NB, "ana/dora/timestamp.txt": WHEN, "ana/dora/submission_secret.txt": "s"},
            [TIMESTAMP_FILE, SECRET_FILE],
        ),
        (
            {"ana/dora/dora_lab.ipynb": NB, "ana/dora/timestamp.txt": "soon", "ana/dora/submission_secret.txt": "s"},
            [SECRET_FILE],
        ),
        ({"ana/dora/dora_lab.ipynb": NB, "ana/dora/submission_secret.txt": "->/etc/hostname"}, []),
        ({"ana/dora_lab.ipynb": NB}, []),
        ({"ana": None}, []),
    ],
    ids=["collected", "bad_timestamp_left_out", "linked_secret_left_out", "plain", "nothing_submitted"],
)
def test_exchange_files_to_carry_beside_the_notebook(tmp_path, layout, files):
    build(tmp_path, layout)
    (found,) = find_submissions(tmp_path)
    assert [path.name for path in found.exchange_files] == files


@pytest.mark.parametrize(
    "layout, message",
    [
        ({"a b/dora_lab.ipynb": NB, "a_b/dora_lab.ipynb": NB}, "two folders map to the student id 'a_b'"),
        ({}, "is not a folder"),
    ],
    ids=["two_folders_one_id", "not_a_folder"],
)
def test_find_submissions_refuses(tmp_path, layout, message):
    build(tmp_path, layout)
    folder = tmp_path if layout else tmp_path / "missing"
    with pytest.raises(LabGradingError, match=message):
        find_submissions(folder)


# --- nbgrader's exchange, all as this user ----------------------------------------------------------------------


@pytest.fixture
def exchange(tmp_path, monkeypatch) -> Path:
    """An empty exchange folder, named in an nbgrader_config.py on Jupyter's config path (as /etc/jupyter/ on a hub)."""
    root = tmp_path / "exchange"
    root.mkdir()
    root.chmod(0o777)
    etc = tmp_path / "etc-jupyter"
    etc.mkdir()
    (etc / "nbgrader_config.py").write_text(
        f"c = get_config()\nc.Exchange.root = {str(root)!r}\nc.CourseDirectory.course_id = {COURSE_ID!r}\n"
    )
    monkeypatch.setenv("JUPYTER_CONFIG_PATH", str(etc))
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(tmp_path / "no-user-config"))
    return root


def student(action: str, student_id: str, home: Path, exchange_root: Path) -> None:
    """Run nbgrader's student-side transfer `action` (FetchAssignment, Submit, FetchFeedback) for `student_id`."""
    from nbgrader.auth import Authenticator
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.exchange import ExchangeFactory
    from traitlets.config import Config

    config = Config()
    config.Exchange.root = str(exchange_root)
    config.Exchange.cache = str(home / "nbgrader_cache")
    config.Exchange.assignment_dir = str(home)
    config.CourseDirectory.course_id = COURSE_ID
    config.CourseDirectory.assignment_id = ASSIGNMENT
    config.CourseDirectory.student_id = student_id
    transfer = getattr(ExchangeFactory(config=config), action)(
        coursedir=CourseDirectory(config=config), authenticator=Authenticator(config=config), config=config
    )
    transfer.start()


def test_release_collect_and_return_through_the_exchange(tmp_path, exchange):
    course = tmp_path / "course"
    (course / "solutions" / ASSIGNMENT).mkdir(parents=True)
    (course / "solutions" / ASSIGNMENT / f"{NOTEBOOK}.ipynb").write_bytes(SOURCE_NOTEBOOK.read_bytes())

    released, _ = release_to_exchange(course)
    assert released == exchange / COURSE_ID / "outbound" / ASSIGNMENT
    generated = course / "notebooks" / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
    assert (released / f"{NOTEBOOK}.ipynb").read_bytes() == generated.read_bytes()
    with pytest.raises(LabGradingError, match="add --force"):
        release_to_exchange(course)
    release_to_exchange(course, force=True)

    homes = {name: tmp_path / "homes" / name for name in ("ana", "ben")}
    # Each student's own work; Ana submits a draft first, then her final version: collect takes the newest.
    versions = {"ana": ["ana's draft", "ana"], "ben": ["ben"]}
    for name, home in homes.items():
        home.mkdir(parents=True)
        student("FetchAssignment", name, home, exchange)
        fetched = home / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
        for version in versions[name]:
            notebook = json.loads(fetched.read_text())
            notebook["metadata"]["written_by"] = version
            fetched.write_text(json.dumps(notebook))
            student("Submit", name, home, exchange)

    collected = collect_submissions(course)
    assert collected.folder == course / "submitted"
    assert [found.student_id for found in collected.submissions] == ["ana", "ben"]
    for found in collected.submissions:
        assert not found.problems and found.timestamp
        assert json.loads(found.notebook.read_text())["metadata"]["written_by"] == found.student_id
    assert "next: dora-lab grade" in collected.summary()

    # What `dora-lab grade` leaves: nbgrader's feedback beside the files autograde carried from submitted/; `cat`
    # handed in a plain notebook, outside the exchange.
    out = tmp_path / "graded"
    for found in collected.submissions:
        folder = out / "course" / "feedback" / found.student_id / ASSIGNMENT
        folder.mkdir(parents=True)
        (folder / f"{NOTEBOOK}.html").write_text(f"<p>feedback for {found.student_id}</p>")
        for path in found.exchange_files:
            (folder / path.name).write_bytes(path.read_bytes())
    plain = out / "course" / "feedback" / "cat" / ASSIGNMENT
    plain.mkdir(parents=True)
    (plain / f"{NOTEBOOK}.html").write_text("<p>feedback for cat</p>")

    returned = return_feedback(out)
    assert returned.students == ["ana", "ben"]
    assert (
        list(returned.not_returned) == ["cat"] and "not submitted through the exchange" in returned.not_returned["cat"]
    )
    for name, home in homes.items():
        student("FetchFeedback", name, home, exchange)
        pages = list((home / ASSIGNMENT / "feedback").glob(f"*/{NOTEBOOK}.html"))
        assert [page.read_text() for page in pages] == [f"<p>feedback for {name}</p>"]
    # Released feedback is named by a hash of each submission's secret: nothing in it names a student.
    assert not any(name in path.name for path in (exchange / COURSE_ID / "feedback").iterdir() for name in homes)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda tmp: collect_submissions(tmp), "exchange folder .* does not exist: set c.Exchange.root"),
        (lambda tmp: return_feedback(tmp), "does not exist: give the --out folder of `dora-lab grade`"),
    ],
    ids=["collect_without_exchange", "return_without_grading"],
)
def test_exchange_commands_say_what_is_missing(tmp_path, monkeypatch, call, message):
    etc = tmp_path / "etc-jupyter"
    etc.mkdir()
    (etc / "nbgrader_config.py").write_text(f"c = get_config()\nc.Exchange.root = {str(tmp_path / 'nowhere')!r}\n")
    monkeypatch.setenv("JUPYTER_CONFIG_PATH", str(etc))
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(tmp_path / "no-user-config"))
    with pytest.raises(LabGradingError, match=message):
        call(tmp_path)


def test_force_without_exchange_is_refused(capsys):
    from labhelpers.cli import main

    with pytest.raises(SystemExit) as stopped:
        main(["release", "--force"])
    assert stopped.value.code == 2
    assert "--force replaces a release in the exchange: give it with --exchange" in capsys.readouterr().err
