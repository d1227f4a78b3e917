"""nbgrader's exchange as `dora-lab` drives it: release, collect, return.

The round trip uses nbgrader's real exchange in a temporary folder, with nbgrader's own student-side transfers (fetch,
submit, fetch feedback: what the Assignments tab calls), all as this user; tests/e2e/test_hub.py runs the same flow
with real users on a real JupyterHub.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labhelpers.assignment import ASSIGNMENT, COURSE_ID, NOTEBOOK, SOURCE_NOTEBOOK
from labhelpers.errors import LabGradingError
from labhelpers.grading.exchange import collect_submissions, release_to_exchange, return_feedback


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
