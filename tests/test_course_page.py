"""Does the course's page list each student across the assignments, one column each, every grade
linked to that assignment's feedback page?"""

from __future__ import annotations

import json
import re
from pathlib import Path

from conftest import copy_course

from tdkit.core.course import Course
from tdkit.reports.course_page import write_course_page

FIXTURE = Path(__file__).parent / "files" / "results" / "results.json"


def test_one_row_per_student_one_column_per_assignment(tmp_path: Path) -> None:
    """Two assignments, one graded for three students and one for two (one of them new): four
    rows, a dash where a student has no result, and links to pages that the folders hold?"""
    root = copy_course(tmp_path / "course")
    (root / "source" / "td_mlp").mkdir()
    (root / "source" / "td_mlp" / "td_mlp.md").write_text("# TD MLP\n", encoding="utf-8")
    (root / "reports" / "td_cnn").mkdir(parents=True)
    (root / "reports" / "td_cnn" / "results.json").write_bytes(FIXTURE.read_bytes())
    second = json.loads(FIXTURE.read_text(encoding="utf-8"))
    second["assignment"] = "td_mlp"
    second["students"] = {
        "alice_martin": second["students"]["alice_martin"],
        "david_roux": second["students"]["bruno_petit"],
    }
    (root / "reports" / "td_mlp").mkdir(parents=True)
    (root / "reports" / "td_mlp" / "results.json").write_text(json.dumps(second), encoding="utf-8")

    page = write_course_page(Course(root, "td_cnn")).read_text(encoding="utf-8")

    rows = re.findall(r"<tr><td>([^<]+)</td>", page)
    assert rows == ["alice_martin", "bruno_petit", "chloe_durand", "david_roux"]
    assert page.count('href="td_cnn/html/alice_martin.html"') == 1
    assert page.count('href="td_mlp/html/alice_martin.html"') == 1
    assert 'href="td_mlp/html/index.html"' in page and 'href="td_cnn/html/index.html"' in page
    david = page.split("<td>david_roux</td>", 1)[1].split("</tr>", 1)[0]
    assert "—" in david and "td_mlp/html/david_roux.html" in david
