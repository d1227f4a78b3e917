"""Errors a lab user can cause, each with a message that says what to do next."""


class LabError(Exception):
    """Base class of every error the lab raises on purpose."""


class LabConfigError(LabError, ValueError):
    """An environment variable (LAB_*) holds a value the lab cannot use."""


class LabDataError(LabError):
    """SST-2 could not be found, read or sampled as asked."""


class LabModelError(LabError):
    """The base model could not be loaded."""


class LabGradingError(LabError):
    """Releasing or grading could not go on (missing source notebook, unusable folder, nbgrader failure)."""
