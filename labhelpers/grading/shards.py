"""A class graded on several machines: each shard's folder records what it was graded with, and shares the secret.

Every shard of a class must draw the same hidden inputs (the course's secret) and grade with the same release,
judges, probes and settings, or their grades would not be one class's. `dora-lab grade --shard i/N --secret FILE`
adopts the secret and writes OUT_DIR/shard.json; `dora-lab merge` reads every shard's record and refuses shards that
differ, saying in what.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from labhelpers.assignment import ASSIGNMENT, NOTEBOOK, RELEASE_DIRECTORY, SOURCE_DIRECTORY
from labhelpers.errors import LabGradingError
from labhelpers.grading.calls import SECRET_FILE
from labhelpers.grading.ledger import STATUS_FILE
from labhelpers.grading.selection import Shard

SHARD_FILE = "shard.json"
"""A shard folder's record (ShardRecord), beside its grades.csv."""
MIN_SECRET_BYTES = 16
"""A shorter secret would let a submission guess its hidden inputs."""


def digest(data: bytes) -> str:
    """Return the hex SHA-256 of data (records name files and the secret by their digest, never their content)."""
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class ShardRecord:
    """What one shard was graded with.

    Attributes:
        shard: "i/N".
        secret: digest of the course's secret (the hidden inputs' seeds).
        source: digest of the instructor's source notebook.
        release: digest of the student release nbgrader generated from it.
        version: what decides a grade besides: the judges, probes and scoring code, the oracles' versions and the
            grading settings (the resume key's version).
    """

    shard: str
    secret: str
    source: str
    release: str
    version: str

    @classmethod
    def of(cls, out_dir: Path, shard: Shard, version: str) -> ShardRecord:
        """Return the record of the grading folder `out_dir` (its course and secret are in place) for `shard`."""
        course = out_dir / "course"
        return cls(
            shard=str(shard),
            secret=digest((out_dir / SECRET_FILE).read_bytes()),
            source=digest((course / SOURCE_DIRECTORY / ASSIGNMENT / f"{NOTEBOOK}.ipynb").read_bytes()),
            release=digest((course / RELEASE_DIRECTORY / ASSIGNMENT / f"{NOTEBOOK}.ipynb").read_bytes()),
            version=version,
        )

    def write(self, out_dir: Path) -> None:
        """Write the record to OUT_DIR/shard.json."""
        (out_dir / SHARD_FILE).write_text(json.dumps(asdict(self), indent=1) + "\n")

    @classmethod
    def read(cls, folder: Path) -> ShardRecord:
        """Read FOLDER/shard.json; raise LabGradingError when the folder is not a shard's."""
        path = folder / SHARD_FILE
        try:
            return cls(**json.loads(path.read_text()))
        except FileNotFoundError:
            raise LabGradingError(
                f"{folder} is not a shard's folder (no {SHARD_FILE}): give the --out folders of "
                "`dora-lab grade --shard i/N`"
            ) from None
        except (ValueError, TypeError) as error:
            raise LabGradingError(f"{path} is not a shard record ({error}): grade that shard again") from None

    @property
    def part(self) -> Shard:
        """The shard as i and N."""
        index, count = self.shard.split("/")
        return Shard(int(index), int(count))


def adopt_secret(out_dir: Path, secret: Path) -> None:
    """Make `secret` the grading folder's secret, so that every shard draws the same hidden inputs.

    Args:
        out_dir: the grading folder.
        secret: a grading_secret file (hex), or a grading folder holding one (e.g. the first shard's).
    """
    source = secret / SECRET_FILE if secret.is_dir() else secret
    try:
        text = source.read_text().strip()
        value = bytes.fromhex(text)
    except (OSError, ValueError) as error:
        raise LabGradingError(
            f"--secret {secret}: not a readable secret ({error}). Make one once with `openssl rand -hex 32 > "
            "grading_secret` and give the same file to every shard"
        ) from None
    if len(value) < MIN_SECRET_BYTES:
        raise LabGradingError(f"--secret {secret}: {len(value)} bytes; a secret needs at least {MIN_SECRET_BYTES}")
    target = out_dir / SECRET_FILE
    if target.is_file():
        if bytes.fromhex(target.read_text().strip()) != value:
            raise LabGradingError(
                f"{out_dir} was graded with another secret than {secret}: its grades used other hidden inputs. "
                "Grade into a new folder, or give the secret it was graded with"
            )
        return
    target.write_text(text + "\n")
    target.chmod(0o600)


def claim_folder(out_dir: Path, record: ShardRecord | None) -> None:
    """Refuse to mix a shard with another shard or a whole class in one folder; write the shard's record.

    Args:
        out_dir: the grading folder, its course and secret in place.
        record: this run's record, or None for a run over the whole class.
    """
    previous = ShardRecord.read(out_dir) if (out_dir / SHARD_FILE).is_file() else None
    if record is None:
        if previous is not None:
            raise LabGradingError(
                f"{out_dir} holds shard {previous.shard} of a class: grade it with --shard {previous.shard}, or the "
                "whole class into another folder (`dora-lab merge` makes a whole class of the shards)"
            )
        return
    if previous is None and (out_dir / STATUS_FILE).is_file():
        raise LabGradingError(
            f"{out_dir} holds a whole class's grades: grade shard {record.shard} into its own folder"
        )
    if previous is not None and previous.shard != record.shard:
        raise LabGradingError(
            f"{out_dir} holds shard {previous.shard}; grade shard {record.shard} into its own folder"
        )
    record.write(out_dir)
