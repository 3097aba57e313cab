"""The repository's front door: README's test command is the one CI runs."""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _pytest_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if "python -m pytest" in line and not line.lstrip().startswith("#")]
    assert len(lines) == 1, f"expected exactly one pytest command, found {lines}"
    return lines[0][lines[0].index("python -m pytest"):]


def test_ci_runs_the_readme_test_command():
    assert _pytest_line((ROOT / ".ci" / "run").read_text()) == _pytest_line((ROOT / "README.md").read_text())
