"""What the distribution is made of: the example DAGs' folder, one version. The built wheel
itself is checked by ``make wheel-check`` (.ci/check_wheel.sh)."""

from __future__ import annotations

import re
from pathlib import Path

import airflow_batch_provider
from airflow_batch_provider import example_dags_folder, get_provider_info

ROOT = Path(__file__).resolve().parents[2]


def test_a_clone_finds_its_top_level_example_dags() -> None:
    folder = example_dags_folder()

    assert folder == ROOT / "example_dags"
    assert (folder / "example_openai_batch_chat.py").is_file()


def test_an_installed_package_finds_the_example_dags_inside_it(tmp_path, monkeypatch) -> None:
    package = tmp_path / "site-packages" / "airflow_batch_provider"
    (package / "example_dags").mkdir(parents=True)
    monkeypatch.setattr(airflow_batch_provider, "__file__", str(package / "__init__.py"))

    assert example_dags_folder() == package / "example_dags"


def test_the_version_is_written_in_version_py_only() -> None:
    version = airflow_batch_provider.__version__
    assert get_provider_info()["versions"] == [version]
    literal = re.compile(rf"""["']{re.escape(version)}["']""")
    files = [ROOT / "pyproject.toml", *(ROOT / "airflow_batch_provider").rglob("*.py")]
    writers = [path.relative_to(ROOT) for path in files if literal.search(path.read_text())]
    assert writers == [Path("airflow_batch_provider/version.py")]
