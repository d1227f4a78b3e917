"""A class on a real JupyterHub set up as docs/deploying.md sets up The Littlest JupyterHub — and privacy.

The hub and its servers run in a TLJH server's view of the disk (tests/support/tljh.py): TLJH's accounts (hub user
ana is the system user jupyter-ana, home /home/jupyter-ana), the users' environment in /opt/tljh/user holding the lab
installed from its wheel (no solutions/) with the guide's Jupyter settings and nbgrader_config.py, the guide's
jupyterhub_config.d/dora-lab.py (deploy/tljh/), the exchange in /srv/nbgrader/exchange and SST-2 in /srv/data/sst2.
Three hub users are made for the run: an instructor, whose course folder (the source notebook) is in their home, and
two students. The instructor types `dora-lab` commands into a JupyterLab terminal; each student uses the Assignments
tab's REST calls (nbgrader's assignment_list extension) and saves answers through the contents API: Ana right, Ben
with the paper's (in, out) axis in `decompose_weight`. Then every user tries to read what is not theirs, a student
searches the whole disk for the solutions, the hidden tests and the grading secret, and the instructor turns their
tools back on as the guide says. What a student's Assignments tab returned, step by step, and what the set-up cost go
to outputs/hub/transcript.json (screenshots to outputs/hub/ when Chromium is there). Needs root (system accounts),
bubblewrap and configurable-http-proxy (`make hub-proxy`): skipped without them, except under $CI, where they are
required.
"""

from __future__ import annotations

import csv
import html
import io
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import pytest

from labhelpers.assignment import ASSIGNMENT, COURSE_ID, NOTEBOOK, RELEASE_NOTEBOOK, SOURCE_NOTEBOOK
from labhelpers.config import PROJECT_ROOT
from labhelpers.grading.samples import answered, solution_sources
from tests.support.hub import Hub, LocalUser, UserServer, find_proxy, local_users, running_hub
from tests.support.install import DEPLOY
from tests.support.jupyter import NbgraderTools
from tests.support.tljh import EXCHANGE, USER_ENV, TljhServer, build_tljh_server, same_filesystem_folder

pytestmark = [pytest.mark.hub, pytest.mark.xdist_group("hub")]

OUTPUTS = PROJECT_ROOT / "outputs" / "hub"
CHROMIUM = Path("/usr/bin/chromium")
SCORE = re.compile(r"\(Score: ([\d.]+) / ([\d.]+)\)")
GRADE_SECONDS = 600
SEARCH_SECONDS = 600
HIDDEN_TESTS = "### BEGIN HIDDEN TESTS"
NBGRADER_PACKAGE = (
    USER_ENV / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages" / "nbgrader"
)
"""nbgrader's own package: its documentation and tests show the hidden-test marker and ship a test gradebook.db."""


def _requirements() -> None:
    missing = []
    if os.geteuid() != 0:
        missing.append("root (the test creates system accounts)")
    if shutil.which("bwrap") is None:
        missing.append("bubblewrap (the TLJH server's view of the disk)")
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
    """What the run left to check: users, their servers, the hub, the server's disk, what they saw."""

    users: dict[str, LocalUser]
    servers: dict[str, UserServer]
    hub: Hub
    server: TljhServer
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


def _instructors_course(instructor: LocalUser) -> None:
    """Put the instructor's course folder in their home: the source notebook, and deploy/'s instructor settings."""
    course = instructor.host_home / "course"
    (course / "solutions" / ASSIGNMENT).mkdir(parents=True)
    shutil.copyfile(SOURCE_NOTEBOOK, course / "solutions" / ASSIGNMENT / f"{NOTEBOOK}.ipynb")
    shutil.copytree(DEPLOY / "instructor-jupyter", course / "deploy" / "instructor-jupyter")
    account = pwd.getpwnam(instructor.account)
    for path in [course, *course.rglob("*")]:
        os.chown(path, account.pw_uid, account.pw_gid)


@pytest.fixture(scope="module")
def classroom():
    """Run the whole term on a fresh TLJH-like hub; yield what it left while the hub still runs (for the checks)."""
    _requirements()
    root = Path(tempfile.mkdtemp(prefix="dora-lab-hub-", dir=same_filesystem_folder()))
    try:
        data_dir = Path(os.environ.get("LAB_DATA_DIR", str(PROJECT_ROOT.parent / "shared" / "data" / "sst2")))
        server = build_tljh_server(root, find_proxy(), data_dir)
        with local_users(["inst", "ana", "ben"], server) as users:
            _instructors_course(users["inst"])
            # What TLJH's spawner gives every server (its extra_paths), and grading's size; jupyterhub_config.d adds
            # the lab's settings.
            environment = {"PATH": f"{USER_ENV / 'bin'}:/usr/local/bin:/usr/bin:/bin", "LAB_FAST": "1"}
            with running_hub(server, [user.name for user in users.values()], environment) as hub:
                started = time.monotonic()
                servers = dict(zip(users, hub.servers([user.name for user in users.values()])))
                room = Classroom(users=users, servers=servers, hub=hub, server=server)
                room.transcript.append({"who": "set-up", "seconds": server.seconds})
                room.transcript.append({"who": "hub", "started_servers": list(users), "seconds": _since(started)})
                try:
                    _term(room)
                finally:
                    OUTPUTS.mkdir(parents=True, exist_ok=True)
                    (OUTPUTS / "transcript.json").write_text(json.dumps(room.transcript, indent=1))
                yield room
    finally:
        # rm, not shutil.rmtree: tens of thousands of hard links go faster (it never follows a link either).
        subprocess.run(["rm", "-rf", "--one-file-system", str(root)], check=False)


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

    uid = pwd.getpwnam(user.account).pw_uid
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
            page.fill("#password_input", room.hub.password)
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
    # Without --course, the course is the folder the lab is installed in (site-packages): root's, read-only to them.
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
    # nbgrader's exchange names each submission by its system account (jupyter-<name> on TLJH), not the hub's name.
    assert set(grades) == {classroom.users["ana"].account, classroom.users["ben"].account}, grades
    ana, ben = (grades[classroom.users[role].account] for role in ("ana", "ben"))
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
    row = classroom.grades[classroom.users[role].account]
    assert score == pytest.approx(float(row["score"])), (score, row)
    assert max_score == pytest.approx(float(row["max_score"])), (max_score, row)
    other = classroom.users["ben" if role == "ana" else "ana"]
    assert other.name not in page and other.account not in page


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
    command = command.format(exchange=EXCHANGE, course=COURSE_ID, assignment=ASSIGNMENT, notebook=NOTEBOOK, **places)
    status, output = classroom.servers[who].terminal(f"{command} > /dev/null")
    if allowed:
        assert status == 0, f"{who}: `{command}` should work:\n{output}"
    else:
        assert status != 0 and "Permission denied" in output, f"{who}: `{command}` should be refused:\n{output}"


@pytest.mark.parametrize("role", ["ana", "ben"])
def test_each_students_outputs_go_to_a_folder_in_their_own_home(classroom, role):
    # LAB_OUTPUT_DIR=~/dora-lab-outputs (deploy/tljh/), expanded by the lab in the student's own server.
    status, output = classroom.servers[role].terminal(
        'LAB_DEVICE=cpu python -c "from labhelpers.config import LabConfig; print(LabConfig.from_env().output_dir)"'
    )
    assert status == 0, output
    assert output.strip().splitlines()[-1] == f"{classroom.users[role].home}/dora-lab-outputs", output


def _tools(server: UserServer) -> NbgraderTools:
    """What `server`'s user gets of nbgrader, through the hub's proxy."""

    def get(path: str) -> tuple[int, str]:
        response = server.request("GET", path)
        return response.status_code, response.text

    return NbgraderTools.of(get)


@pytest.mark.parametrize("role", ["ana", "ben"])
def test_students_servers_offer_the_students_nbgrader_tools_only(classroom, role):
    tools = _tools(classroom.servers[role])
    assert tools.students_only, tools


def _distinctive_hidden_test() -> str:
    """Return the longest line of the source notebook's hidden tests that the student release does not contain."""
    released = RELEASE_NOTEBOOK.read_text()
    lines = []
    for cell in nbformat.read(SOURCE_NOTEBOOK, as_version=4).cells:
        if HIDDEN_TESTS in cell.source:
            hidden = cell.source.split(HIDDEN_TESTS, 1)[1].split("### END HIDDEN TESTS", 1)[0]
            lines += [line.strip() for line in hidden.splitlines() if line.strip()]
    # Quotes and backslashes are escaped inside a notebook's JSON (and ' would end the shell's quoting): a line
    # without them is found as it is written.
    candidates = [line for line in lines if line not in released and not set(line) & set("\"'\\")]
    assert candidates, f"no hidden-test line of {SOURCE_NOTEBOOK} to search for"
    return max(candidates, key=len)


def _search_command(strings: list[str], separator: str) -> str:
    """Return the shell line that searches the whole disk by name, then by content (fixed strings), as `ls -R` would."""
    names = (
        r"find / \( -path /proc -o -path /sys -o -path /dev \) -prune -o "
        r"\( -name grading_secret -o -name gradebook.db -o -path '*/solutions/*' \) -print 2>/dev/null"
    )
    patterns = " ".join(f"-e '{string}'" for string in strings)
    contents = (
        "find / -mindepth 1 -maxdepth 1 ! -type l ! -name proc ! -name sys ! -name dev -print0 "
        f"| xargs -0 grep -rsIFoH {patterns} | sort -u"
    )
    return f"{names}; echo {separator}; {contents}"


def test_a_students_search_of_the_disk_finds_no_solutions_hidden_tests_or_grading_secret(classroom):
    classroom.require("fetch_feedback")  # everything is on the disk: course, gradebook, secret, returned feedback
    secret = (classroom.users["inst"].host_home / "graded" / "grading_secret").read_text().strip()
    hidden = _distinctive_hidden_test()
    separator = "--- by content ---"
    command = _search_command([HIDDEN_TESTS, hidden, secret], separator)
    started = time.monotonic()
    status, output = classroom.servers["ben"].terminal(command, timeout=SEARCH_SECONDS)
    seconds = _since(started)
    OUTPUTS.mkdir(parents=True, exist_ok=True)
    (OUTPUTS / "disk_search.txt").write_text(f"{command}\n\n{output}\n({seconds} s, status {status})\n")
    assert status == 0 and separator in output, output
    by_name, by_content = (part.strip().splitlines() for part in output.split(separator, 1))
    found = [path for path in by_name if not path.startswith(f"{NBGRADER_PACKAGE}/")]
    own_feedback = (
        f"{classroom.users['ben'].home}/{ASSIGNMENT}/feedback/"  # test_returned_feedback_shows_no_hidden_tests
    )
    found += [
        line
        for line in by_content
        if not (line.startswith(f"{NBGRADER_PACKAGE}/") and line.endswith(f":{HIDDEN_TESTS}"))
        and not line.startswith(own_feedback)
    ]
    assert not found, "a student's search of the disk found:\n" + "\n".join(found)
    # The search did read the disk: it found nbgrader's own examples (its test gradebook, its documented marker).
    assert any(path.endswith("/gradebook.db") for path in by_name), output
    assert any(line.endswith(f":{HIDDEN_TESTS}") for line in by_content), output


@pytest.mark.parametrize("role", ["ana", "ben"])
def test_returned_feedback_shows_no_hidden_tests(classroom, role):
    classroom.require("fetch_feedback")
    page = classroom.feedback[role]
    text = " ".join(html.unescape(re.sub(r"<[^>]+>", "", page)).split())  # the page's text, spaces collapsed
    assert HIDDEN_TESTS not in text, f"{role}'s feedback page shows the hidden tests (nbgrader keeps them in)"
    assert " ".join(_distinctive_hidden_test().split()) not in text, f"{role}'s feedback page shows a hidden test"


def test_instructors_turn_their_nbgrader_tools_back_on_as_the_guide_says(classroom):
    classroom.require("fetch_feedback")  # it restarts the instructor's server: the term is over
    server = classroom.servers["inst"]
    before = _tools(server)
    assert before.students_only, before
    classroom.instructor("mkdir -p ~/.jupyter && cp -r course/deploy/instructor-jupyter/. ~/.jupyter/")
    classroom.hub.restart_server(server.name)
    after = _tools(server)
    assert after.instructors, after
