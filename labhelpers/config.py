"""LabConfig: every setting the lab reads from the environment, validated in one place; the device check."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from labhelpers.errors import LabConfigError

if TYPE_CHECKING:
    import torch

PROJECT_ROOT = Path(__file__).resolve().parent.parent
"""The project folder (the one holding ``pyproject.toml``) in a source checkout."""

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}

SIZES = ("student", "fast", "long")
"""The lab's sizes: the student run (about 10 minutes on a 2-core CPU), LAB_FAST's minute (CI, grading), and the
optional longer run (LAB_SIZE=long: more steps, a decaying schedule with warm-up, no dropout, more seeds)."""


def _flag(environ: Mapping[str, str], name: str) -> bool:
    value = environ.get(name, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise LabConfigError(
        f"{name}={environ[name]!r} is not a yes/no value: set {name}=1 to turn it on or 0 to turn it off."
    )


def _optional_path(environ: Mapping[str, str], name: str) -> Path | None:
    value = environ.get(name, "").strip()
    return Path(value).expanduser() if value else None


@dataclass(frozen=True)
class LabConfig:
    """The lab's settings.

    Attributes:
        fast: shrink data, epochs and seeds so notebooks run in about a minute (CI, grading): ``LAB_FAST=1``,
            ``LAB_SIZE=fast`` or ``setup(fast=True)``; the same as size == "fast".
        size: "student" (default), "fast" or "long" (``LAB_SIZE``; ``LAB_FAST=1`` makes it "fast").
        size_source: where the size was chosen, in words (printed by setup).
        data_dir: ``LAB_DATA_DIR``; a folder holding SST-2 ``train.tsv`` and ``validation.tsv``, or None.
        output_dir: ``LAB_OUTPUT_DIR``; where results and figures go (default: the project's ``outputs/``,
            wherever the notebook runs from).
        seed: ``LAB_SEED``; the base random seed (default 0).
        model_name: ``LAB_MODEL``; a hub id or local folder, or None for the packaged all-MiniLM-L6-v2.
        device: ``"cuda"`` when a GPU is visible, else ``"cpu"`` (``LAB_DEVICE`` overrides).
        figures: draw and save the figures (default); ``LAB_FIGURES=0`` builds them but neither lays them out nor
            saves them, where nobody looks at them (grading: the sandbox's notebooks run with it).
    """

    fast: bool = False
    size: str = "student"
    size_source: str = "default"
    data_dir: Path | None = None
    output_dir: Path = PROJECT_ROOT / "outputs"
    seed: int = 0
    model_name: str | None = None
    device: str = "cpu"
    figures: bool = True

    def __post_init__(self):
        # fast and size say the same thing twice: either one set makes both say it.
        if self.size not in SIZES:
            raise LabConfigError(f"size={self.size!r} is not a size: use one of {', '.join(SIZES)} (LAB_SIZE).")
        if self.fast or self.size == "fast":
            object.__setattr__(self, "fast", True)
            object.__setattr__(self, "size", "fast")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> LabConfig:
        """Read and validate the LAB_* variables.

        Args:
            environ: the environment to read (default ``os.environ``).

        Returns:
            A LabConfig. Raises LabConfigError naming the variable when a value is unusable.
        """
        environ = os.environ if environ is None else environ
        seed_text = environ.get("LAB_SEED", "0").strip() or "0"
        try:
            seed = int(seed_text)
        except ValueError:
            raise LabConfigError(
                f"LAB_SEED={seed_text!r} is not an integer: set LAB_SEED to a whole number such as 0."
            ) from None
        if seed < 0:
            raise LabConfigError(f"LAB_SEED={seed} is negative: set LAB_SEED to 0 or a positive whole number.")
        data_dir = _optional_path(environ, "LAB_DATA_DIR")
        if data_dir is not None and not data_dir.is_dir():
            raise LabConfigError(
                f"LAB_DATA_DIR={str(data_dir)!r} is not a folder: point it at a folder holding SST-2's "
                "train.tsv and validation.tsv, or unset it to use data/sst2 (filled by `make data`)."
            )
        output_dir = _optional_path(environ, "LAB_OUTPUT_DIR") or PROJECT_ROOT / "outputs"
        if output_dir.exists() and not output_dir.is_dir():
            raise LabConfigError(f"LAB_OUTPUT_DIR={str(output_dir)!r} is a file, not a folder: choose a folder path.")
        model_name = environ.get("LAB_MODEL", "").strip() or None
        device = environ.get("LAB_DEVICE", "").strip() or _default_device()
        if device not in {"cpu", "cuda"} and not device.startswith("cuda:"):
            raise LabConfigError(f"LAB_DEVICE={device!r} is not a device: use cpu, cuda or cuda:N.")
        size, size_source = _size(environ)
        figures = _flag(environ, "LAB_FIGURES") if environ.get("LAB_FIGURES", "").strip() else True
        return cls(
            size=size,
            size_source=size_source,
            data_dir=data_dir,
            output_dir=output_dir,
            seed=seed,
            model_name=model_name,
            device=device,
            figures=figures,
        )


def _size(environ: Mapping[str, str]) -> tuple[str, str]:
    """Return (size, where it was chosen) from LAB_FAST and LAB_SIZE; LAB_FAST=1 wins over LAB_SIZE."""
    asked = environ.get("LAB_SIZE", "").strip().lower()
    if asked and asked not in SIZES:
        raise LabConfigError(
            f"LAB_SIZE={environ['LAB_SIZE']!r} is not a size: use student (the default), fast (about a minute) or "
            "long (more steps and seeds, no dropout; see README.md), or unset LAB_SIZE."
        )
    if _flag(environ, "LAB_FAST"):
        ignored = f"; LAB_SIZE={asked} ignored" if asked not in ("", "fast") else ""
        return "fast", f"LAB_FAST=1 in the environment{ignored}"
    if asked:
        return asked, f"LAB_SIZE={asked} in the environment"
    return "student", "default"


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


_active: LabConfig | None = None
"""The config `setup()` chose for this session; None until a notebook calls it."""


def get_config() -> LabConfig:
    """Return the settings in force: those `setup()` chose, else the LAB_* variables read now.

    Every module reads settings through this one accessor (never `os.environ` itself).

    Returns:
        A LabConfig. Raises LabConfigError naming the variable when a value is unusable.
    """
    return _active if _active is not None else LabConfig.from_env()


def setup(seed: int | None = None, environ: Mapping[str, str] | None = None, fast: bool = False) -> LabConfig:
    """Start a notebook: read the config, seed every generator, use the machine's cores, say what was chosen.

    Args:
        seed: overrides `LAB_SEED`.
        environ: the environment to read (default ``os.environ``).
        fast: run everything at the LAB_FAST size (about a minute), whatever LAB_SIZE says; LAB_FAST=1 in the
            environment (CI, grading) makes it fast in any case.

    Returns:
        The LabConfig in force (also what `get_config()` returns from now on).
    """
    global _active
    import torch

    from labhelpers.seeding import seed_all

    config = LabConfig.from_env(environ)
    if seed is not None:
        config = dataclasses.replace(config, seed=seed)
    if fast and not config.fast:
        ignored = f"; LAB_SIZE={config.size} in the environment ignored" if config.size != "student" else ""
        config = dataclasses.replace(config, fast=True, size="fast", size_source=f"setup(fast=True){ignored}")
    _active = config
    seed_all(config.seed)
    # A laptop CPU: one thread per core (the default can oversubscribe under Jupyter).
    torch.set_num_threads(max(1, min(os.cpu_count() or 1, torch.get_num_threads())))
    data = str(config.data_dir) if config.data_dir else "data/sst2 or the hub"
    hint = "; setup(fast=True) runs everything in about a minute" if config.size == "student" else ""
    print(
        f"DoRA Lab: size {config.size} ({config.size_source}{hint}); SST-2 from {data}; outputs in "
        f"{config.output_dir}/; device {config.device}; seed {config.seed}"
        + ("; figures built, not drawn or saved (LAB_FIGURES=0)." if not config.figures else ".")
    )
    return config


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """Return the torch device to run on, after checking that this machine has it.

    Args:
        device: "cpu", "cuda", "cuda:N" or a torch.device; None = LabConfig.device (`LAB_DEVICE`; default "cuda"
            when PyTorch sees a GPU, else "cpu").

    Returns:
        A torch.device. Raises LabConfigError saying what to set when the device cannot train a model here.
    """
    import torch

    asked = get_config().device if device is None else device
    try:
        resolved = torch.device(asked)
    except (RuntimeError, TypeError):
        raise LabConfigError(
            f"device={asked!r} is not a torch device: use cpu, cuda or cuda:N (LAB_DEVICE)."
        ) from None
    if resolved.type == "cpu":
        return resolved
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise LabConfigError(
                f"device {str(resolved)!r} was asked for (LAB_DEVICE or device=), but PyTorch sees no GPU here "
                "(torch.cuda.is_available() is False): set LAB_DEVICE=cpu, or unset LAB_DEVICE to use a GPU only "
                "when there is one."
            )
        if resolved.index is not None and resolved.index >= count:
            raise LabConfigError(
                f"device {str(resolved)!r} was asked for, but PyTorch sees {count} GPU(s): use cuda:0 … cuda:{count - 1}."
            )
        return resolved
    raise LabConfigError(
        f"device {str(resolved)!r} cannot train the lab's model: a 'meta' tensor holds no data, and only cpu and "
        "cuda are supported here. Use cpu, cuda or cuda:N (LAB_DEVICE)."
    )
