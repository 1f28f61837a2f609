"""The course environment: declared once in td-requirements.txt, held to in every kernel, named in
every report, and a module outside it costs only the code that uses it."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from click.testing import CliRunner
from conftest import REPO, copy_course, td_cnn

from tdkit.cli import main
from tdkit.core.course import Course
from tdkit.core.errors import TdkitError
from tdkit.release.environment import ENVIRONMENT_FILE, grading_environment, read_environment
from tdkit.release.generate import release
from tdkit.reports.html import render_reports
from tdkit.reports.results import read_results_json
from tdkit.trusted.grade import GradeRun, grade_all
from tdkit.untrusted.execute import execute_notebook
from tdkit.untrusted.import_guard import notebook_outputs, recorded_modules

SOLUTION = REPO / "source/td_cnn/td_cnn.ipynb"
SKLEARN = "scikit-learn>=1.4"
# The solution's confusion matrix written with scikit-learn, imported at the top of its cell.
SKLEARN_CONFUSION = '''from sklearn.metrics import confusion_matrix as sk_confusion_matrix


def confusion_matrix(model, dataset):
    """Matrice (10, 10) d'entiers : lignes = classe vraie, colonnes = classe prédite."""
    return sk_confusion_matrix(np.asarray(dataset["label"]), predict(model, dataset), labels=list(range(10)))


def per_class_accuracy(confusion):
    """Exactitude de chaque classe vraie (array de 10 floats)."""
    confusion = np.asarray(confusion, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.diag(confusion) / confusion.sum(axis=1)
'''


def _solution_with_unavailable_imports() -> nbformat.NotebookNode:
    """The solution whose first cell starts as students' often do: seaborn, scikit-learn, tqdm."""
    nb = nbformat.read(SOLUTION, as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "code")
    first.source = (
        "import seaborn as sns\nfrom sklearn.metrics import f1_score\nfrom tqdm import tqdm\n"
        + first.source
    )
    return nb


def _solution_with_sklearn_confusion() -> nbformat.NotebookNode:
    nb = nbformat.read(SOLUTION, as_version=4)
    cell = next(
        c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "confusion_matrix"
    )
    cell.source = SKLEARN_CONFUSION
    return nb


def _submit(course: Course, student: str, nb: nbformat.NotebookNode) -> Path:
    target = course.submitted_notebook(student)
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, target)
    return target


def _declare(root: Path, line: str) -> None:
    with open(root / ENVIRONMENT_FILE, "a", encoding="utf-8") as file:
        file.write(line + "\n")


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Course, GradeRun, GradeRun]:
    """Both notebooks graded against the course's environment, then the sklearn one again once
    scikit-learn is declared."""
    pytest.importorskip(
        "sklearn", reason="scikit-learn is in the test extra: pip install -e '.[test]'"
    )
    course = Course(copy_course(tmp_path_factory.mktemp("environment")))
    release(course, verify=False)
    _submit(course, "imports", _solution_with_unavailable_imports())
    _submit(course, "sklearn", _solution_with_sklearn_confusion())
    undeclared = grade_all(course, progress=lambda line: None)
    _declare(course.root, SKLEARN)
    declared = grade_all(course, student="sklearn", progress=lambda line: None)
    return course, undeclared, declared


def test_environment_is_the_declared_packages_and_their_dependencies() -> None:
    """Does td-requirements.txt provide the TD's modules and their dependencies' (pandas, tqdm), and no other?"""
    environment = read_environment(REPO / ENVIRONMENT_FILE)
    assert environment.not_installed == ()
    assert environment.packages[:2] == ("torch", "datasets")
    for module in (
        "torch",
        "datasets",
        "numpy",
        "matplotlib",
        "polars",
        "PIL",
        "IPython",
        "pandas",
        "tqdm",
    ):
        assert environment.allows(module), module
    for module in ("os", "json", "tdkit", "numpy.linalg"):
        assert environment.allows(module), module
    for module in ("sklearn", "seaborn", "nbgrader", "pytest", "sklearn.metrics"):
        assert not environment.allows(module), module


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("--index-url http://example.org", "pip option"),
        ("torch >=>= 2", "not a package requirement"),
    ],
)
def test_bad_lines_are_refused_with_their_line(tmp_path: Path, line: str, says: str) -> None:
    """Is a line that is not one package refused, naming the file, the line and what is expected?"""
    path = tmp_path / ENVIRONMENT_FILE
    path.write_text(f"# the course\ntorch>=2.2\n{line}\n", encoding="utf-8")
    with pytest.raises(TdkitError, match=rf"{ENVIRONMENT_FILE}:3: .*{says}"):
        read_environment(path)


def test_a_declared_package_not_installed_stops_grading_before_anyone(tmp_path: Path) -> None:
    """Does a declared but uninstalled package stop `tdkit grade` with the command that installs it?"""
    course = Course(copy_course(tmp_path / "course"))
    _declare(course.root, "tdkit-no-such-package>=1.0")
    _submit(course, "someone", nbformat.read(SOLUTION, as_version=4))
    with pytest.raises(TdkitError, match=r"tdkit-no-such-package>=1.0, not installed .*run 'make'"):
        grade_all(course, progress=lambda line: None)
    assert not (course.reports / "results.json").exists()
    with pytest.raises(TdkitError, match="run 'make'"):
        grading_environment(course.root)


def test_kernel_holds_imports_to_the_environment(tmp_path: Path) -> None:
    """In a real kernel: does a top-level import outside the environment become a placeholder that fails
    only when used, while try/except and function-level imports behave as without the package?"""
    cells = [
        (
            "import seaborn as sns, math\nfrom seaborn import *\nfrom sklearn.metrics import confusion_matrix as cm\n"
            "import numpy as np\nx = np.ones(2)"
        ),
        "try:\n    import sklearn\n    fallback = False\nexcept ImportError:\n    fallback = True\nprint(fallback)",
        "def f():\n    import sklearn\n    return 1\nf()",
        "cm([1], [1])",
        "print(x.sum(), math.pi > 3, repr(sns))",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    environment = read_environment(REPO / ENVIRONMENT_FILE)
    run = execute_notebook(nb, tmp_path, cell_timeout=60, environment=environment.kernel_json())
    assert run.failure is None
    assert [(e.index, e.ename) for e in run.errors] == [
        (2, "ModuleNotFoundError"),
        (3, "ModuleNotFoundError"),
    ]
    assert all(
        "Le module `sklearn` n'est pas disponible dans l'environnement de correction" in e.evalue
        for e in run.errors
    )
    assert "`cm` (importé de `sklearn.metrics`)" in run.errors[1].evalue
    printed = {
        i: "".join(o.get("text", "") for o in c.outputs if o.get("name") == "stdout")
        for i, c in enumerate(run.notebook.cells)
    }
    assert printed[1] == "True\n"
    assert printed[4].startswith("2.0 True <sns : module `seaborn` indisponible")
    assert recorded_modules(notebook_outputs(run.notebook)) == ["seaborn", "sklearn"]


def test_unavailable_imports_keep_full_marks_with_the_note(
    graded: tuple[Course, GradeRun, GradeRun],
) -> None:
    """Does a correct notebook starting with seaborn and scikit-learn imports keep 21/21, its page
    naming both modules at the top?"""
    course, undeclared, _ = graded
    student = undeclared.results.students["imports"]
    assert [c.check_id for c in student.checks if not c.passed] == []
    assert student.score == student.max_score == 21.0
    assert student.missing_modules == ["seaborn", "sklearn"]
    page = (course.reports / "html" / "imports.html").read_text(encoding="utf-8")
    note = page.index(
        "Le module <code>seaborn</code> n&#39;est pas disponible dans l&#39;environnement de correction"
    )
    assert "Le module <code>sklearn</code>" in page
    assert "paquets disponibles : torch, datasets, numpy" in page
    assert note < page.index("Vue d'ensemble")


def test_sklearn_confusion_matrix_fails_only_that_function_when_undeclared(
    graded: tuple[Course, GradeRun, GradeRun],
) -> None:
    """Does a confusion_matrix written with scikit-learn fail its own checks only, saying why?"""
    _, undeclared, _ = graded
    student = undeclared.results.students["sklearn"]
    failed = {c.check_id: c.message for c in student.checks if not c.passed}
    assert failed and all(cid.startswith("confusion_matrix/") for cid in failed), failed
    assert all("Le module `sklearn` n'est pas disponible" in message for message in failed.values())
    assert student.missing_modules == ["sklearn"]


def test_declared_sklearn_passes(graded: tuple[Course, GradeRun, GradeRun]) -> None:
    """Once scikit-learn is one line of td-requirements.txt, does the same notebook get 21/21, without a note?"""
    _, _, declared = graded
    student = declared.results.students["sklearn"]
    assert student.score == student.max_score == 21.0
    assert student.missing_modules == []
    assert "scikit-learn" in declared.results.environment


def test_class_summary_counts_students_and_modules(
    graded: tuple[Course, GradeRun, GradeRun],
) -> None:
    """Does the class summary say how many copies import a missing module, and which?"""
    course, undeclared, _ = graded
    assert undeclared.results.environment[:2] == ["torch", "datasets"]
    summary = (course.reports / "html" / "index.html").read_text(encoding="utf-8")
    assert "1 copie importe un module" in summary  # after the regrade, only "imports" still does
    assert "<code>seaborn</code> (1), <code>sklearn</code> (1)" in summary


def test_reports_name_the_modules_from_results_json(tmp_path: Path) -> None:
    """From results.json alone: is the module named at the top of its page, and counted in the summary?"""
    results = read_results_json(REPO / "tests/files/results/results.json")
    files = render_reports(results, td_cnn(), tmp_path)
    page = files.students["chloe_durand"].read_text(encoding="utf-8")
    note = page.index(
        "Le module <code>seaborn</code> n&#39;est pas disponible dans l&#39;environnement de correction "
        "(paquets disponibles : torch, datasets, numpy, matplotlib, polars, pillow, ipykernel"
    )
    assert (
        note
        < page.index("L'exécution de votre notebook s'est arrêtée")
        < page.index("Vue d'ensemble")
    )
    assert "environnement de correction" not in files.students["alice_martin"].read_text(
        encoding="utf-8"
    )
    summary = files.summary.read_text(encoding="utf-8")
    assert "1 copie importe un module" in summary
    assert '<td><code>seaborn</code></td><td class="num">1</td>' in summary
    assert '<a href="chloe_durand.html">chloe_durand</a>' in summary


def test_check_says_the_same(graded: tuple[Course, GradeRun, GradeRun], tmp_path: Path) -> None:
    """Does `tdkit check` name the module first and fail the confusion test, then pass once it is declared?"""
    course, _, _ = graded
    notebook = _submit(Course(tmp_path, "td_cnn"), "me", _solution_with_sklearn_confusion())
    undeclared = tmp_path / "undeclared.txt"
    undeclared.write_text((REPO / ENVIRONMENT_FILE).read_text(encoding="utf-8"), encoding="utf-8")
    runner = CliRunner()
    result = runner.invoke(main, ["check", str(notebook), "--requirements", str(undeclared)])
    lines = result.output.splitlines()
    assert result.exit_code == 1, result.output
    assert lines[0].startswith(
        "note: Le module `sklearn` n'est pas disponible dans l'environnement de correction"
    )
    assert any(line.startswith("FAIL test_confusion_matrix") for line in lines), result.output
    assert not any(line.startswith("FAIL") and "confusion" not in line for line in lines), (
        result.output
    )
    result = runner.invoke(
        main, ["check", str(notebook), "--requirements", str(course.root / ENVIRONMENT_FILE)]
    )
    assert result.exit_code == 0, result.output
    assert not result.output.startswith("note:")


def test_release_lists_the_environment_and_refuses_imports_outside_it(tmp_path: Path) -> None:
    """Does `tdkit release` write a declared package into the notebook's list, and refuse a solution
    importing an undeclared one?"""
    pytest.importorskip(
        "sklearn", reason="scikit-learn is in the test extra: pip install -e '.[test]'"
    )
    course = Course(copy_course(tmp_path / "course"))
    _declare(course.root, SKLEARN)
    result = release(course, verify=False)
    assert result.packages[-1] == "scikit-learn"
    released = nbformat.read(result.release_path, as_version=4)
    assert f"- `{SKLEARN}`" in released.cells[1].source
    assert f"- `{SKLEARN}`" in course.source_md.read_text(encoding="utf-8")
    markdown = course.source_md.read_text(encoding="utf-8")
    course.source_md.write_text(
        markdown.replace("import datasets\n", "import datasets\nimport seaborn\n", 1),
        encoding="utf-8",
    )
    with pytest.raises(
        TdkitError, match=r"(?s)outside the course environment .*cell 2: seaborn.*make release"
    ):
        release(course, verify=False)
