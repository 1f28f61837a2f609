"""Submissions coming in: the LMS export, the roster, deadlines, and preparation before the run."""
