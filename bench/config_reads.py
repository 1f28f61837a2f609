"""How many times one ``tdkit grade`` executes ``nbgrader_config.py``: once per command now (the
course keeps what it loaded while the file is unchanged), 32 times for two students before.

``.venv/bin/python bench/config_reads.py``: a course copy, two example submissions, one
``grade_all`` with its own ``Course``, as the ``tdkit grade`` command makes it.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # conftest.copy_course: the course files, nothing else

from conftest import copy_course
from traitlets.config.loader import PyFileConfigLoader

from tdkit.core.course import Course
from tdkit.release.generate import release
from tdkit.trusted.grade import grade_all


def main() -> int:
    executed: list[str] = []
    load = PyFileConfigLoader.load_config
    PyFileConfigLoader.load_config = lambda self: executed.append(self.full_filename) or load(self)  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory(prefix="tdkit-config-reads-") as scratch:
        root = copy_course(Path(scratch) / "course")
        release(Course(root), verify=False)
        for sid, name in (("1", "alice_solution"), ("2", "bob_td_loop_kept")):
            target = Course(root).submitted_notebook(sid)
            target.parent.mkdir(parents=True)
            shutil.copy(ROOT / "examples" / "td_cnn" / "submissions" / f"{name}.ipynb", target)
        executed.clear()
        grade_all(Course(root), progress=lambda line: None)
    print(f"nbgrader_config.py executed {len(executed)} time(s) by one grading of 2 submissions")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
