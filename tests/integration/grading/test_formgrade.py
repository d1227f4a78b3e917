"""Manual grading and deadlines on a class graded in sandboxes, through the commands docs/grading.md gives.

Two students (the instructor's answers, submitted 25.5 h after the due date; the untouched release, on time) are
graded once with `dora-lab grade --jobs 2`, after `dora-lab deadline` set the due date. Then `dora-lab formgrade`
serves nbgrader's real formgrader, driven through the REST API its pages call: a manual grade and a comment on a
written answer reach `dora-lab feedback` and `dora-lab export`, its Autograde button changes no score, a second
formgrader on the same gradebook adds its grades, an extension removes the penalty, and a backup restored into a new
folder and graded again gives the same grades back.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest

from labhelpers.assignment import NOTEBOOK, SOURCE_NOTEBOOK
from labhelpers.grading.formgrade import REFUSAL
from labhelpers.grading.samples import perfect, write_submission
from tests.support.course import fresh_release, lab_environment, read_grades
from tests.support.jupyter import free_port

pytestmark = [pytest.mark.slow]

DORA_LAB = Path(sys.executable).parent / "dora-lab"
DUE = "2026-03-02T17:00+01:00"
"""16:00 UTC; the policy's default takes 10 % of the score per day or part of a day late."""
SUBMITTED = {"perfect": "2026-03-03 17:30:00.000000 UTC", "untouched": "2026-03-02 15:00:00.000000 UTC"}
"""nbgrader's timestamp.txt: perfect is 25.5 h late (two days: 20 %), untouched on time."""
COMMENT = "Right about lora_B at step 0; say why DoRA's magnitude still moves."
ATTACK = "<script>document.title = 'pwned'</script> <img src=x onerror=\"alert(1)\">"
"""Added to perfect's first written answer: the formgrader shows it to the instructor, the feedback page to perfect."""


def dora_lab(*args: object, timeout: int = 900) -> str:
    """Run a `dora-lab` command as the instructor types it; return what it printed."""
    done = subprocess.run(
        [str(DORA_LAB), *map(str, args)], capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"dora-lab {args[0]} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def submissions(tmp_path_factory, sst2_dir) -> Iterator[Path]:
    """Two submissions in nbgrader's collected layout, with their submission times (and the grading environment)."""
    with lab_environment(sst2_dir):
        release = nbformat.read(fresh_release(tmp_path_factory.mktemp("course")), as_version=4)
        folder = tmp_path_factory.mktemp("submissions")
        notebooks = {"perfect": perfect(release, nbformat.read(SOURCE_NOTEBOOK, as_version=4)), "untouched": release}
        written = [cell for cell in notebooks["perfect"].cells if cell.cell_type == "markdown" and _answer(cell)]
        written[0].source += "\n\n" + ATTACK
        for student_id, notebook in notebooks.items():
            path = write_submission(folder / student_id, "dora", notebook)
            (path.parent / "timestamp.txt").write_text(SUBMITTED[student_id])
        yield folder


@pytest.fixture(scope="module")
def graded(submissions, tmp_path_factory) -> Path:
    """The class graded once, after the due date was set in the new grading folder."""
    out = tmp_path_factory.mktemp("run") / "graded"
    dora_lab("deadline", out, "--due", DUE)
    started = time.monotonic()
    dora_lab("grade", submissions, "--out", out, "--jobs", 2, "--quiet")
    print(f"graded 2 submissions in {time.monotonic() - started:.0f} s")
    return out


def _answer(cell: nbformat.NotebookNode) -> bool:
    return bool(cell.metadata.get("nbgrader", {}).get("solution"))


@dataclass
class Formgrader:
    """A running `dora-lab formgrade`: its address, token and REST calls."""

    base: str
    token: str

    def call(self, path: str, method: str = "GET", body: dict | None = None):
        """Call the formgrader's REST API (what its pages call) and return the JSON answer."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.base}/formgrader/api/{path}", data, {"Authorization": f"token {self.token}"}, method=method
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            return json.load(response)

    def page(self, path: str) -> str:
        request = urllib.request.Request(f"{self.base}/{path}", headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.read().decode()

    def submission_id(self, student_id: str) -> str:
        notebooks = self.call(f"submitted_notebooks/dora/{NOTEBOOK}")
        return next(notebook["id"] for notebook in notebooks if notebook["student"] == student_id)

    def grades(self, student_id: str) -> dict[str, dict]:
        """Return {grade cell: its grade} of the student's notebook."""
        return {grade["name"]: grade for grade in self.call(f"grades?submission_id={self.submission_id(student_id)}")}

    def set_grade(self, student_id: str, cell: str, points: float) -> dict:
        return self.call(f"grade/{self.grades(student_id)[cell]['id']}", "PUT", {"manual_score": points})

    def set_comment(self, student_id: str, cell: str, text: str) -> dict:
        comments = self.call(f"comments?submission_id={self.submission_id(student_id)}")
        comment = next(comment for comment in comments if comment["name"] == cell)
        return self.call(f"comment/{comment['id']}", "PUT", {"manual_comment": text})


@contextlib.contextmanager
def formgrade(out: Path, workdir: Path) -> Iterator[Formgrader]:
    """Run `dora-lab formgrade OUT` where Jupyter's settings turn the formgrader off; yield it once it answers."""
    config = workdir / "jupyter-config"
    config.mkdir(parents=True)
    off = {"ServerApp": {"jpserver_extensions": {"nbgrader.server_extensions.formgrader": False}}}
    (config / "jupyter_server_config.json").write_text(json.dumps(off))  # as a students' environment has it
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(config), "JUPYTER_RUNTIME_DIR": str(workdir / "runtime")}
    log = workdir / "formgrade.log"
    with log.open("w") as handle:
        server = subprocess.Popen(
            [str(DORA_LAB), "formgrade", str(out), "--port", str(free_port())],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        deadline = time.monotonic() + 120
        while not (found := re.search(r"(http://127\.0\.0\.1:\d+)/formgrader\?token=(\w+)", log.read_text())):
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"dora-lab formgrade did not start:\n{log.read_text()}")
            time.sleep(0.5)
        formgrader = Formgrader(found[1], found[2])
        assert formgrader.call("status") == {"status": True}
        yield formgrader
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


@pytest.fixture(scope="module")
def server(graded, tmp_path_factory) -> Iterator[Formgrader]:
    with formgrade(graded, tmp_path_factory.mktemp("formgrader")) as formgrader:
        yield formgrader


def _scores(formgrader: Formgrader) -> dict[str, dict[str, tuple]]:
    return {
        student_id: {
            name: (grade["auto_score"], grade["manual_score"]) for name, grade in formgrader.grades(student_id).items()
        }
        for student_id in SUBMITTED
    }


def test_grade_takes_the_late_penalty_from_nbgraders_due_date(graded):
    rows = read_grades(graded / "grades.csv")
    perfect_row, untouched = rows["perfect"], rows["untouched"]
    assert (perfect_row["late_penalty"], perfect_row["score"]) == ("3.6", "14.4")  # 20 % of 18: two days late
    assert perfect_row["status"] == "25.5 h after the due date and extension: late penalty 3.6"
    assert (untouched["late_penalty"], untouched["status"]) == ("0", "ok")
    page = (graded / "feedback" / "perfect" / f"{NOTEBOOK}.html").read_text()
    assert "Late submission penalty (Score: -3.6)" in page and f"{NOTEBOOK} (Score: 14.4 / 24.0)" in page


def test_formgrader_runs_where_jupyter_turns_it_off_and_shows_the_graded_submissions(server):
    submissions = {submission["student"]: submission for submission in server.call("submissions/dora")}
    assert sorted(submissions) == ["perfect", "untouched"]
    assert all(submission["autograded"] and submission["submitted"] for submission in submissions.values())
    assert submissions["perfect"]["score"] == 18 and submissions["perfect"]["needs_manual_grade"]
    page = server.page(f"formgrader/submissions/{server.submission_id('perfect')}/")
    assert "Grader: passed (5 / 5 points)" in page  # the judge's verdicts in the notebook the formgrader shows
    with pytest.raises(urllib.error.HTTPError, match="404"):
        server.page("lab")  # the environment's other server extensions are off on this server


def test_a_written_answer_runs_nothing_in_the_formgrader_or_on_the_feedback_page(server, graded):
    formgrader = server.page(f"formgrader/submissions/{server.submission_id('perfect')}/")
    feedback = (graded / "feedback" / "perfect" / f"{NOTEBOOK}.html").read_text()
    for page in (formgrader, feedback):
        assert "<script>document.title" not in page and 'onerror="alert(1)"' not in page
        assert "&lt;script&gt;document.title = 'pwned'&lt;/script&gt;" in page  # shown as text, for the grader to see


def test_autograde_button_changes_no_score_and_says_why(server, graded):
    before = _scores(server)
    autograded = graded / "course" / "autograded" / "perfect" / "dora" / f"{NOTEBOOK}.ipynb"
    notebook = autograded.read_bytes()
    for student_id in SUBMITTED:
        answer = server.call(f"submission/dora/{student_id}/autograde", "POST")
        assert answer["success"] is False and REFUSAL in answer["log"]
    own = subprocess.run(
        [str(Path(sys.executable).parent / "nbgrader"), "autograde", "dora", "--force"],
        cwd=graded / "course", capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert own.returncode != 0 and "nbgrader's autograde is off in this graded copy" in own.stdout + own.stderr
    assert _scores(server) == before
    assert autograded.read_bytes() == notebook


def test_manual_grade_and_comment_reach_feedback_and_export(server, graded):
    assert server.set_grade("perfect", "ex3_written_answer", 1.5)["needs_manual_grade"] is False
    assert server.set_comment("perfect", "ex3_written_answer", COMMENT)["manual_comment"] == COMMENT
    server.set_grade("untouched", "ex3_written_answer", 1.0)
    dora_lab("feedback", graded)
    dora_lab("export", graded)
    page = (graded / "feedback" / "perfect" / f"{NOTEBOOK}.html").read_text()
    assert COMMENT in page
    assert re.findall(r"Written response</a> \(Score: ([\d.]+) / 2\.0\)", page) == ["1.5", "0.0", "0.0"]
    assert "Late submission penalty (Score: -3.9)" in page  # 20 % of the new score, 19.5
    rows = read_grades(graded / "grades.csv")
    assert (rows["perfect"]["exercise_3"], rows["perfect"]["manual_pending"]) == ("4.5", "4")
    assert (rows["perfect"]["late_penalty"], rows["perfect"]["score"]) == ("3.9", "15.6")
    assert (rows["untouched"]["exercise_3"], rows["untouched"]["score"], rows["untouched"]["late_penalty"]) == (
        "1",
        "1",
        "0",
    )  # on time: no penalty


def test_second_formgrader_on_the_same_gradebook_adds_its_grades(server, graded, tmp_path):
    with formgrade(graded, tmp_path) as second:
        second.set_grade("untouched", "ex4_written_answer", 1.0)
        server.set_grade("untouched", "ex5_written_answer", 0.5)
        # Each server sees the other's saves once it has saved since (nbgrader reloads its session after a save).
        assert server.grades("untouched")["ex4_written_answer"]["manual_score"] == 1.0
        assert second.grades("untouched")["ex5_written_answer"]["manual_score"] == 0.5
    dora_lab("export", graded)
    row = read_grades(graded / "grades.csv")["untouched"]
    assert (row["exercise_4"], row["exercise_5"]) == ("1", "0.5")


def test_extension_that_covers_the_lateness_removes_the_penalty(graded):
    summary = dora_lab("deadline", graded, "--extend", "perfect", 48)
    assert "perfect: submitted 2026-03-03 17:30 UTC, extension 48 h, on time" in summary.splitlines()
    dora_lab("feedback", graded)
    dora_lab("export", graded)
    row = read_grades(graded / "grades.csv")["perfect"]
    assert row["late_penalty"] == "0" and row["status"] == "ok"
    assert float(row["score"]) == sum(float(row[f"exercise_{n}"]) for n in range(1, 6))
    assert "Late submission penalty" not in (graded / "feedback" / "perfect" / f"{NOTEBOOK}.html").read_text()


def test_backup_restored_and_graded_again_gives_the_grades_back(graded, submissions, tmp_path):
    dora_lab("backup", graded, tmp_path / "backup")
    restored = tmp_path / "restored"
    restored.mkdir()
    for name in ("gradebook.db", "grading_secret"):
        shutil.copy2(tmp_path / "backup" / name, restored / name)
    only_perfect = tmp_path / "submissions"
    shutil.copytree(submissions / "perfect", only_perfect / "perfect")
    dora_lab("grade", only_perfect, "--out", restored, "--jobs", 2, "--quiet")
    dora_lab("export", graded)
    before, after = read_grades(graded / "grades.csv")["perfect"], read_grades(restored / "grades.csv")["perfect"]
    same = ["score", "max_score", "late_penalty", *(f"exercise_{n}" for n in range(1, 6))]
    assert {column: after[column] for column in same} == {column: before[column] for column in same}
    assert after["manual_pending"] == "6"  # nbgrader marks manual grades of a regraded notebook for a second look
    assert COMMENT in (restored / "feedback" / "perfect" / f"{NOTEBOOK}.html").read_text()
