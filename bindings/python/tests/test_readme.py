"""The README's examples run as written against the installed wheel."""

import re
import subprocess
import sys

from conftest import REPO


def readme_example(section: str) -> str:
    readme = (REPO / "bindings" / "python" / "README.md").read_text()
    match = re.search(r"```python\n(.*?)```", readme.split(section, 1)[1], re.S)
    assert match is not None, f"no python block after {section!r}"
    return match.group(1)


def run_code(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_ten_line_example() -> None:
    code = readme_example("## Ten lines")
    assert len([line for line in code.splitlines() if line.strip()]) <= 10
    assert run_code(code) == "True b'hi'\n"


def test_node_example() -> None:
    assert run_code(readme_example("## The runtime node")) == "b'ping'\nb'hello' True\n"


def test_relay_and_portal_example() -> None:
    assert run_code(readme_example("## Relays, UDP and portals")) == "b'ding'\nb'picture'\n"
