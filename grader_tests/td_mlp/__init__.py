"""td_mlp's grading side: its groups (``assignment.py``), its probe and inputs (run in the sandbox), its hidden checks and oracle (trusted)."""
