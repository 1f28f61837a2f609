"""The trusted stage: grading orchestration, hidden checks, artifacts, gradebook, review-path safety."""
