"""Invariants of the versioned schema steps that need no database."""

from __future__ import annotations

from delayed import schema


def test_every_step_can_be_adopted() -> None:
    """A database without version rows may be at any shape (made before versioning, by
    `metadata.create_all`, or its version table dropped): a step without `adopt` would run
    again on objects that exist and fail (step 3 did, in acceptance/test_cli.py)."""
    assert [step.version for step in schema.STEPS if step.adopt is None] == []


def test_versions_are_unique_and_in_order() -> None:
    versions = [step.version for step in schema.STEPS]
    assert versions == sorted(set(versions))
