"""The one exception type of tdkit: its message says what went wrong and what to run next."""


class TdkitError(Exception):
    """A problem the user can fix; the message names the fix."""
