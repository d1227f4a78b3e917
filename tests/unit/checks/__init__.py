"""Tests of labhelpers.checks, one module per check module."""

import re


def phrase(text: str) -> str:
    """Match text literally, whatever the case of its first letter (hints start a sentence in the message)."""
    return "(?i)" + re.escape(text)
