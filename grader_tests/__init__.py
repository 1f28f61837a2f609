"""The grading side of the course's assignments: one package per assignment (``grader_tests/<name>/``)."""
