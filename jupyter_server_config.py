"""Jupyter server settings of the course, for formgrader: `jupyter server --config=jupyter_server_config.py`.

The Content-Security-Policy on formgrader's pages (tdkit.trusted.formgrader_csp; README "How grading
works"): a script that got into a student's notebook never runs in the grader's session.
"""

c = get_config()  # noqa: F821 - provided by traitlets when it loads this file

c.ServerApp.jpserver_extensions.update({"nbgrader.server_extensions.formgrader": True, "tdkit.trusted.formgrader_csp": True})
