"""new_assignment as the engine sees it: one check group, no data folder, no figure.

A template: copy this folder to ``grader_tests/<name>/`` (docs/instructor.md, "Adding an
assignment"). Copied into the sandbox with ``probe.py``: it imports nothing of the checks.
"""

from __future__ import annotations

from tdkit.core.assignment import Assignment, CheckGroup, GradingProfile

ASSIGNMENT = Assignment(
    title="Standardiser des données",
    groups=(CheckGroup("standardize", "standardize", "standardisation"),),
    # The notebook's parameters cell, for grading runs: small, so a run takes seconds.
    profile=lambda source: GradingProfile({"N_ROWS": 50, "SEED": 0}),
    release_profile=lambda: GradingProfile({"N_ROWS": 50, "SEED": 0}),
    preload=("numpy",),
)
