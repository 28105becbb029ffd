"""The ```python block under README.md's "Python" heading runs as written."""
import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[2] / "README.md"


def python_block():
    text = README.read_text()
    m = re.search(r"^## Python\b.*?^```python\n(.*?)^```", text, re.S | re.M)
    assert m, "README.md has no ```python block under a '## Python' heading"
    return m.group(1)


def test_readme_example_runs(capsys):
    code = python_block()
    assert 3 <= len([ln for ln in code.splitlines() if ln.strip()]) <= 8
    exec(compile(code, str(README), "exec"), {"__name__": "__readme__"})
