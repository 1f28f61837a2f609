"""Writes moodle_export.zip: a small "Download all submissions" export of Moodle 4 for td_cnn.

Run from this folder: ``python make_moodle_export.py``. The output is byte-for-byte stable
(fixed dates), so the committed zip only changes when this script does.
"""

import json
import zipfile
from pathlib import Path

DATE = (2025, 11, 14, 18, 30, 0)


def notebook(author: str) -> str:
    """A tiny but valid nbformat 4 notebook."""
    cell = {"cell_type": "markdown", "id": "intro", "metadata": {}, "source": [f"TD CNN, {author}"]}
    return json.dumps(
        {"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}, indent=1
    )


# (entry name, content): folders per student, names as Moodle writes them (UTF-8 flag set).
ENTRIES = [
    ("Alice Martin_101234_assignsubmission_file_/td_cnn.ipynb", notebook("Alice Martin")),
    ("Élise Durand_101235_assignsubmission_file_/TD CNN (1).ipynb", notebook("Élise Durand")),
    ("Karim Benali_101236_assignsubmission_file_/td_cnn.ipynb", notebook("Karim Benali")),
    (
        "Karim Benali_101236_assignsubmission_file_/td_cnn_final.ipynb",
        notebook("Karim Benali, final"),
    ),
    ("Léa Petit_101237_assignsubmission_file_/td_cnn.py", "print('exported as a script')\n"),
    ("Paul Girard_101238_assignsubmission_file_/td_cnn.ipynb", notebook("Paul Girard")),
    (
        "Paul Girard_101238_assignsubmission_onlinetext_/onlinetext.html",
        "<p>Voir le notebook.</p>\n",
    ),
]


def main() -> None:
    out = Path(__file__).with_name("moodle_export.zip")
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, content in ENTRIES:
            info = zipfile.ZipInfo(name, date_time=DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o100644 << 16
            zf.writestr(info, content)


if __name__ == "__main__":
    main()
