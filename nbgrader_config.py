"""nbgrader configuration of the TD course; tdkit reads it too (limits, assignment)."""

import os

from nbgrader.preprocessors import (
    CheckCellMetadata,
    ClearHiddenTests,
    ClearMarkScheme,
    ClearOutput,
    ComputeChecksums,
    IncludeHeaderFooter,
    InstantiateTests,
    LockCells,
    SaveCells,
)

from tdkit.release_stub import ClearSolutionsWithStubs

c = get_config()  # noqa: F821 - provided by traitlets when it loads this file

# The course directory is this repository: source/, release/, submitted/, autograded/, feedback/.
c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
c.CourseDirectory.course_id = "td_cnn"
c.CourseDirectory.db_assignments = [dict(name="td_cnn")]
# The jupytext Markdown beside the notebook is the full solution: never copy it into a release.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", "*.md"]

c.GenerateAssignment.create_assignment = True
# nbgrader's own pipeline, with ClearSolutions replaced by a subclass that releases the TD's
# buggy training loop (a "### BEGIN RELEASE STUB" region) instead of "YOUR CODE HERE".
# Order as in nbgrader: ClearHiddenTests after ComputeChecksums and SaveCells, then checksums again.
c.GenerateAssignment.preprocessors = [
    IncludeHeaderFooter,
    InstantiateTests,
    LockCells,
    ClearSolutionsWithStubs,
    ClearOutput,
    CheckCellMetadata,
    ComputeChecksums,
    SaveCells,
    ClearHiddenTests,
    ClearMarkScheme,
    ComputeChecksums,
    CheckCellMetadata,
]
