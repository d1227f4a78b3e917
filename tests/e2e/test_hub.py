"""A class on a real JupyterHub: release, fetch, submit, collect, grade, return, fetch feedback — and privacy.

JupyterHub (PAM log-in, local processes) runs on loopback with three system users made for the run: an instructor
and two students, and an nbgrader exchange in a temporary folder named in an nbgrader_config.py on every server's
Jupyter config path. The instructor types `dora-lab` commands into a JupyterLab terminal; each student uses the
Assignments tab's REST calls (nbgrader's assignment_list extension) and saves answers through the contents API: Ana
right, Ben with the paper's (in, out) axis in `decompose_weight`. Every user then tries to read what is not theirs.
What a student's Assignments tab returned, step by step, goes to outputs/hub/transcript.json (and screenshots to
outputs/hub/ when Chromium is there). Needs root (system users) and configurable-http-proxy (`make hub-proxy`):
skipped without them, except under $CI, where they are required.
"""

from __future__ import annotations

import csv
import io
import json
import os
import pwd
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import pytest

from labhelpers.assignment import ASSIGNMENT, COURSE_ID, NOTEBOOK, SOURCE_NOTEBOOK
from labhelpers.config import PROJECT_ROOT
from labhelpers.grading.samples import answered, solution_sources
from tests.support.hub import VENV_BIN, LocalUser, UserServer, find_proxy, local_users, running_hub

pytestmark = [pytest.mark.hub, pytest.mark.xdist_group("hub")]

OUTPUTS = PROJECT_ROOT / "outputs" / "hub"
CHROMIUM = Path("/usr/bin/chromium")
SCORE = re.compile(r"\(Score: ([\d.]+) / ([\d.]+)\)")
GRADE_SECONDS = 600


def _requirements() -> None:
    missing = []
    if os.geteuid() != 0:
        missing.append("root (the test creates system users)")
    if find_proxy() is None:
        missing.append("configurable-http-proxy (`make hub-proxy`)")
    if missing:
        message = "the hub test needs " + " and ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def wrong_axis_answers(source: nbformat.NotebookNode) -> dict[str, str]:
    """The instructor's answers with the usual slip: the magnitude as the norm over dim=0 (the paper's (in, out) W)."""
    answers = solution_sources(source)
    right = answers["decompose_weight"]
    assert "dim=1" in right, f"the decompose_weight solution no longer says dim=1:\n{right}"
    return {**answers, "decompose_weight": right.replace("dim=1", "dim=0")}


@dataclass
class Classroom:
    """What the run left to check: users, their servers, what they saw, the exchange."""

    users: dict[str, LocalUser]
    servers: dict[str, UserServer]
    exchange: Path
    grades: dict[str, dict[str, str]] = field(default_factory=dict)
    feedback: dict[str, str] = field(default_factory=dict)
    tabs: dict[str, list] = field(default_factory=dict)
    transcript: list[dict] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    """{stage: what went wrong} for the stages of the term that did not complete (the later ones did not run)."""

    def require(self, *stages: str) -> None:
        """Fail the calling test when one of `stages` (or a stage before it) did not complete."""
        for stage in STAGES[: max(STAGES.index(stage) for stage in stages) + 1]:
            if stage in self.failed:
                pytest.fail(f"the term's stage {stage!r} failed, so this could not be checked:\n{self.failed[stage]}")

    def instructor(self, command: str, timeout: float = 120) -> str:
        """Type `command` into the instructor's terminal (in their home); fail with its output unless it succeeds."""
        started = time.monotonic()
        status, output = self.servers["inst"].terminal(f"cd ~ && {command}", timeout=timeout)
        self.transcript.append(
            {"who": "instructor", "terminal": command, "status": status, "output": output, "seconds": _since(started)}
        )
        assert status == 0, f"`{command}` failed ({status}):\n{output}"
        return output

    def assignments_tab(self, role: str, action: str | None = None) -> list[dict]:
        """Do what the Assignments tab does (list, or fetch / submit / fetch_feedback); return the listed assignments."""
        server, started = self.servers[role], time.monotonic()
        if action is None:
            response = server.request("GET", "/assignments", params={"course_id": COURSE_ID})
        else:
            data = {"course_id": COURSE_ID, "assignment_id": ASSIGNMENT}
            response = server.request("POST", f"/assignments/{action}", data=data)
        response.raise_for_status()
        body = response.json()
        self.transcript.append(
            {
                "who": role,
                "request": f"{'POST' if action else 'GET'} /user/{server.name}/assignments{'/' + action if action else ''}",
                "response": body,
                "seconds": _since(started),
            }
        )
        assert body.get("success"), f"{role}'s Assignments tab, {action or 'list'}: {body}"
        return body["value"]


def _since(started: float) -> float:
    return round(time.monotonic() - started, 1)


def _status(listing: list[dict]) -> list[str]:
    return sorted(item["status"] for item in listing if item["assignment_id"] == ASSIGNMENT)


def _submissions(listing: list[dict]) -> list[dict]:
    """The student's submissions of the assignment, as the Assignments tab lists them (feedback state included)."""
    return [
        submission
        for item in listing
        if item["assignment_id"] == ASSIGNMENT and item["status"] == "submitted"
        for submission in item["submissions"]
    ]


@pytest.fixture(scope="module")
def classroom():
    """Run the whole term on a fresh hub; yield what it left while the hub still runs (for the privacy checks)."""
    _requirements()
    root = Path(tempfile.mkdtemp(prefix="dora-lab-hub-"))
    root.chmod(0o711)  # users reach their homes and the exchange below it, and list nothing
    try:
        homes, exchange, etc = root / "home", root / "exchange", root / "etc-jupyter"
        homes.mkdir(mode=0o711)
        exchange.mkdir()
        exchange.chmod(0o777)  # nbgrader's exchange: everyone writes (the course folders inside are guarded)
        etc.mkdir(mode=0o755)
        (etc / "nbgrader_config.py").write_text(
            f"c = get_config()\nc.Exchange.root = {str(exchange)!r}\nc.CourseDirectory.course_id = {COURSE_ID!r}\n"
        )
        # Terminals start bash as it is (not a login shell, whose /etc/profile would reset PATH to the system's).
        (etc / "jupyter_server_config.py").write_text(
            'c = get_config()\nc.ServerApp.terminado_settings = {"shell_command": ["/bin/bash"]}\n'
        )
        for config in etc.iterdir():
            config.chmod(0o644)
        with local_users(["inst", "ana", "ben"], homes) as users:
            course = users["inst"].home / "course" / "solutions" / ASSIGNMENT
            course.mkdir(parents=True)
            shutil.copyfile(SOURCE_NOTEBOOK, course / f"{NOTEBOOK}.ipynb")
            for path in [course.parent.parent, course.parent, course, course / f"{NOTEBOOK}.ipynb"]:
                shutil.chown(path, users["inst"].name, users["inst"].name)
            environment = {
                "PATH": f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin",
                "JUPYTER_CONFIG_PATH": str(etc),
                "LAB_DATA_DIR": os.environ.get("LAB_DATA_DIR", str(PROJECT_ROOT.parent / "shared" / "data" / "sst2")),
                "LAB_FAST": "1",
                "HF_HUB_OFFLINE": "1",
            }
            names = [user.name for user in users.values()]
            with running_hub(root / "hub", names, environment) as hub:
                started = time.monotonic()
                servers = dict(zip(users, hub.servers([user.name for user in users.values()])))
                room = Classroom(users=users, servers=servers, exchange=exchange)
                room.transcript.append({"who": "hub", "started_servers": list(users), "seconds": _since(started)})
                try:
                    _term(room)
                finally:
                    OUTPUTS.mkdir(parents=True, exist_ok=True)
                    (OUTPUTS / "transcript.json").write_text(json.dumps(room.transcript, indent=1))
                yield room
    finally:
        shutil.rmtree(root, ignore_errors=True)


STAGES = ["release_and_submit", "collect_grade_return", "fetch_feedback"]
"""The term's stages, in order: each needs the ones before it."""


def _term(room: Classroom) -> None:
    """Release, fetch, answer, submit, collect, grade, return, fetch feedback: the class's whole round trip.

    A stage that fails is recorded in `room.failed` and ends the term; the checks that need it fail with its message,
    the others (privacy) still run.
    """
    source = nbformat.read(SOURCE_NOTEBOOK, as_version=4)
    answers = {"ana": solution_sources(source), "ben": wrong_axis_answers(source)}

    def release_and_submit() -> None:
        room.instructor("dora-lab release --exchange --course course")
        for role, chosen in answers.items():
            room.tabs[role] = [room.assignments_tab(role)]
            room.tabs[role].append(room.assignments_tab(role, "fetch"))
            server = room.servers[role]
            path = f"{ASSIGNMENT}/{NOTEBOOK}.ipynb"
            fetched = nbformat.from_dict(server.read_notebook(path))
            server.save_notebook(path, answered(fetched, chosen))
            room.tabs[role].append(room.assignments_tab(role, "submit"))
        _screenshot(room, "ana", "assignments_submitted.png")

    def collect_grade_return() -> None:
        room.instructor("dora-lab collect --course course")
        room.instructor(
            "dora-lab grade course/submitted --course course --out graded --jobs 2 --quiet", timeout=GRADE_SECONDS
        )
        rows = csv.DictReader(io.StringIO(room.servers["inst"].read_file("graded/grades.csv")))
        room.grades = {row["student_id"]: row for row in rows}
        room.instructor("dora-lab return graded")

    def fetch_feedback() -> None:
        for role in answers:
            room.tabs[role].append(room.assignments_tab(role))  # after `return`: the feedback waits in the exchange
            room.tabs[role].append(room.assignments_tab(role, "fetch_feedback"))
            pages = [submission["local_feedback_path"] for submission in _submissions(room.tabs[role][-1])]
            assert len(pages) == 1 and pages[0], f"{role} should have one feedback folder: {room.tabs[role][-1]}"
            room.feedback[role] = room.servers[role].read_file(f"{pages[0]}/{NOTEBOOK}.html")
        _screenshot(room, "ana", "assignments_feedback.png", expect_text="view feedback")

    for stage in (release_and_submit, collect_grade_return, fetch_feedback):
        try:
            stage()
        except Exception as error:  # recorded for the checks that need this stage; the privacy checks go on
            room.failed[stage.__name__] = f"{type(error).__name__}: {error}"
            break
    room.transcript.append(
        {"who": "hub", "server_rss_mib": {role: _rss_mib(user) for role, user in room.users.items()}}
    )


def _rss_mib(user: LocalUser) -> int:
    """Return the resident memory of everything running as `user` now (their single-user server, idle), in MiB."""
    import psutil

    uid = pwd.getpwnam(user.name).pw_uid
    total = 0
    for process in psutil.process_iter(["uids", "memory_info"]):
        if process.info["uids"] and process.info["uids"].real == uid and process.info["memory_info"]:
            total += process.info["memory_info"].rss
    return round(total / 2**20)


def _screenshot(room: Classroom, role: str, name: str, expect_text: str = "") -> None:
    """Log `role` in through the hub's form in headless Chromium and photograph their Assignments tab (if Chromium).

    The tab must list the submitted assignment (and `expect_text` in that list, when given).
    """
    if not CHROMIUM.exists():
        return
    from playwright.sync_api import expect, sync_playwright
    from tests.e2e.test_browser import CHROMIUM_ARGS

    user, url = room.users[role], room.servers[role].hub_url
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 800})
            page.goto(f"{url}/hub/login")
            page.fill("#username_input", user.name)
            page.fill("#password_input", user.password)
            page.click("#login_submit")
            page.wait_for_url(re.compile(rf"/user/{user.name}/lab"), timeout=60_000)
            page.locator(".lm-MenuBar-item", has_text="Nbgrader").click()
            page.locator(".lm-Menu:visible .lm-Menu-item", has_text="Assignment List").click()
            submitted = page.locator("#submitted_assignments_list")
            expect(submitted).to_contain_text(ASSIGNMENT, timeout=30_000)
            if expect_text:
                expect(submitted).to_contain_text(expect_text, timeout=30_000)
            OUTPUTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=OUTPUTS / name)
        finally:
            browser.close()


def test_release_from_a_course_folder_the_instructor_cannot_write_says_what_to_do(classroom):
    classroom.require("release_and_submit")
    # Without --course, the course is the project the lab is installed from: here root's, read-only to the instructor.
    status, output = classroom.servers["inst"].terminal("cd ~ && dora-lab release --exchange")
    assert status == 1, output
    assert "cannot write to the course folder" in output and "--course DIR" in output, output


def test_students_see_the_release_fetch_it_and_submit(classroom):
    classroom.require("release_and_submit")
    for role in ("ana", "ben"):
        listed, fetched, submitted = classroom.tabs[role][:3]
        assert _status(listed) == ["released"], listed
        assert _status(fetched) == ["fetched"], fetched
        assert _status(submitted) == ["fetched", "submitted"], submitted
        assert [s["has_exchange_feedback"] for s in _submissions(submitted)] == [False], submitted


def test_returned_feedback_shows_in_the_tab_then_is_fetched(classroom):
    classroom.require("fetch_feedback")
    for role in ("ana", "ben"):
        returned, fetched = classroom.tabs[role][3:5]
        assert [s["has_exchange_feedback"] for s in _submissions(returned)] == [True], returned
        assert [s["has_local_feedback"] for s in _submissions(returned)] == [False], returned
        assert [s["has_local_feedback"] for s in _submissions(fetched)] == [True], fetched


def test_grades_come_from_the_collected_submissions(classroom):
    classroom.require("collect_grade_return")
    grades = classroom.grades
    ana, ben = (grades[classroom.users[role].name] for role in ("ana", "ben"))
    assert set(grades) == {classroom.users["ana"].name, classroom.users["ben"].name}, grades
    assert ana["status"] == "ok" and ben["status"] == "ok", (ana, ben)
    assert float(ana["score"]) > float(ben["score"]), (ana, ben)
    # Ben's slip is in Exercise 1: he loses its points and keeps the others.
    assert float(ben["exercise_1"]) < float(ana["exercise_1"]), (ana, ben)
    assert {key: ben[key] for key in ben if key.startswith("exercise_") and key != "exercise_1"} == {
        key: ana[key] for key in ana if key.startswith("exercise_") and key != "exercise_1"
    }


@pytest.mark.parametrize("role", ["ana", "ben"])
def test_each_student_fetches_their_own_feedback_and_score(classroom, role):
    classroom.require("fetch_feedback")
    page = classroom.feedback[role]
    score, max_score = map(float, SCORE.search(page).groups())
    row = classroom.grades[classroom.users[role].name]
    assert score == pytest.approx(float(row["score"])), (score, row)
    assert max_score == pytest.approx(float(row["max_score"])), (max_score, row)
    other = classroom.users["ben" if role == "ana" else "ana"].name
    assert other not in page


# Who tries what, in their own JupyterLab terminal, whether the system lets them, and the stage of the term that made
# the thing tried. The allowed rows show that each command works for the one it belongs to (so a refusal is about
# permissions, not a wrong path).
PRIVACY = [
    ("ben_reads_anas_notebook", "ben", "cat {ana}/{assignment}/{notebook}.ipynb", False, "release_and_submit"),
    ("ben_reads_anas_feedback", "ben", "cat {ana}/{assignment}/feedback/*/{notebook}.html", False, "fetch_feedback"),
    ("ben_lists_the_inbound_submissions", "ben", "ls {exchange}/{course}/inbound", False, "release_and_submit"),
    ("ben_lists_the_released_feedback", "ben", "ls {exchange}/{course}/feedback", False, "fetch_feedback"),
    (
        "ben_reads_the_instructors_source",
        "ben",
        "cat {inst}/course/solutions/{assignment}/{notebook}.ipynb",
        False,
        "release_and_submit",
    ),
    ("ben_reads_the_gradebook", "ben", "ls {inst}/graded", False, "collect_grade_return"),
    ("ana_reads_her_own_feedback", "ana", "cat {ana}/{assignment}/feedback/*/{notebook}.html", True, "fetch_feedback"),
    (
        "ben_reads_the_release",
        "ben",
        "cat {exchange}/{course}/outbound/{assignment}/{notebook}.ipynb",
        True,
        "release_and_submit",
    ),
    ("instructor_lists_the_inbound_submissions", "inst", "ls {exchange}/{course}/inbound", True, "release_and_submit"),
    (
        "instructor_lists_the_released_feedback",
        "inst",
        "ls {exchange}/{course}/feedback",
        True,
        "collect_grade_return",
    ),
    ("instructor_reads_the_gradebook", "inst", "ls {inst}/graded", True, "collect_grade_return"),
]


@pytest.mark.parametrize(
    "who, command, allowed, needs", [case[1:] for case in PRIVACY], ids=[case[0] for case in PRIVACY]
)
def test_privacy_between_users(classroom, who, command, allowed, needs):
    classroom.require(needs)
    places = {role: str(user.home) for role, user in classroom.users.items()}
    command = command.format(
        exchange=classroom.exchange, course=COURSE_ID, assignment=ASSIGNMENT, notebook=NOTEBOOK, **places
    )
    status, output = classroom.servers[who].terminal(f"{command} > /dev/null")
    if allowed:
        assert status == 0, f"{who}: `{command}` should work:\n{output}"
    else:
        assert status != 0 and "Permission denied" in output, f"{who}: `{command}` should be refused:\n{output}"
