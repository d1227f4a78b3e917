"""The names of explained mistakes are kept only inside a noting_mistakes() block, innermost block first."""

from __future__ import annotations

from labhelpers.checks.core import Mistake, explain
from labhelpers.checks.noted import note_mistakes, noting_mistakes

SQUARED = Mistake("the squared length", name="squared_norm")
UNNAMED = Mistake("a mistake without a name")


def test_explain_notes_the_named_mistakes_it_turns_into_a_hint():
    with noting_mistakes() as noted:
        assert explain([SQUARED, UNNAMED]).startswith("Two mistakes together")
        assert explain([]) == ""
    assert noted == ["squared_norm"]


def test_outside_a_block_nothing_is_kept_and_blocks_nest():
    note_mistakes(["lost"])  # the notebook's own checks: no block open
    with noting_mistakes() as outer:
        with noting_mistakes() as inner:
            note_mistakes(["inner"])
        note_mistakes(["outer"])
    assert (outer, inner) == (["outer"], ["inner"])
