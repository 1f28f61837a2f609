"""new_assignment's grading side: its definition, its probe (run in the sandbox), its checks (trusted)."""
