"""The untrusted stage: what runs inside the sandbox (isolation, limits, runner, kernel, probe).

Nothing here imports the trusted side, the intake, the reports, ``reference`` or ``grader_tests``."""
