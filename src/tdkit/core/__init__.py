"""What every stage shares: errors, files, the course's layout, the data and the grader-chosen inputs."""
