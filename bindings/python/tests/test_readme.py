"""The README's ten-line example runs as written against the installed wheel."""

import re
import subprocess
import sys

from conftest import REPO


def test_readme_example_runs() -> None:
    readme = (REPO / "bindings" / "python" / "README.md").read_text()
    section = readme.split("## Ten lines", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None
    code = match.group(1)
    assert len([line for line in code.splitlines() if line.strip()]) <= 10
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "True b'hi'\n"
