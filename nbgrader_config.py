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

from tdkit.core.course import gradebook_url
from tdkit.release.stub import ClearSolutionsWithStubs

c = get_config()  # noqa: F821 - provided by traitlets when it loads this file

# The course directory is this repository: source/, release/, submitted/, autograded/, feedback/.
c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
c.CourseDirectory.course_id = "td_cnn"
c.CourseDirectory.db_assignments = [dict(name="td_cnn"), dict(name="td_mlp")]
# The gradebook: gradebook.db here, unless TDKIT_DB_URL or the untracked file .tdkit/db_url names
# another database (docs/instructor.md, "PostgreSQL gradebook"). Never write a password in this committed file.
_db_url = gradebook_url(__file__)  # refuses a password written in this file
if _db_url:
    c.CourseDirectory.db_url = _db_url
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

# Limits of each submission's untrusted run (tdkit.core.config.TdkitLimits; docs/security.md, "Limits and hostile
# submissions"). An unknown key here is an error that lists the valid ones.
c.TdkitLimits.cell_timeout = 120  # seconds per cell
c.TdkitLimits.run_timeout = 300  # seconds for the whole run (kernel starts, cells, probe)
c.TdkitLimits.memory_mb = 6144  # address space of each process
c.TdkitLimits.cpu_seconds = 600  # CPU seconds of each process
c.TdkitLimits.max_file_mb = 256  # largest file the run may write
c.TdkitLimits.max_output_mb = 8  # cell outputs kept in the executed notebook
c.TdkitLimits.max_processes = 256  # processes + threads of one run (when tdkit grades as root)
c.TdkitLimits.max_notebook_mb = 32  # largest submitted notebook
c.TdkitLimits.max_cells = 1000  # most cells in a submitted notebook

# Deadline (tdkit.intake.late; docs/instructor.md, "Moodle"): dates in the course's time zone, which is also the one of the
# Moodle grading worksheet's dates. tdkit writes the due date and each extension into nbgrader's gradebook;
# the penalty comes from nbgrader's late-submission plugin point.
c.Exchange.timezone = "Europe/Paris"
# Each assignment's due date; extensions: student id -> that student's own, e.g. {"101234": "2026-12-06 18:00"}
c.TdkitDeadlines.assignments = {
    "td_mlp": {"duedate": "2026-11-27 18:00", "extensions": {}},
    "td_cnn": {"duedate": "2026-12-04 18:00", "extensions": {}},
}
c.AssignLatePenalties.plugin_class = "tdkit.intake.late.LatePenalty"
c.LatePenalty.points_per_day = 2.0  # points off per started day late (a TD is out of about 20)
c.LatePenalty.zero_after_days = 7.0  # later than a week: the score is zero

# Similarity between submissions (tdkit.reports.similarity.TdkitSimilarity; docs/ta.md, "Similarity report"): a
# pair is reported when a score stands out against all the class's pairs and enough of it matches.
c.TdkitSimilarity.threshold = 2.5  # robust z-score (median, MAD of the class's pairs) to stand out
c.TdkitSimilarity.min_similarity = 0.6  # share of both sides matched (0-1)
c.TdkitSimilarity.min_tokens = 80  # matched normalised characters for one function alone
