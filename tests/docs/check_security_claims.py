#!/usr/bin/env python3
"""docs/SECURITY.md names the test behind every claim as `path::test` (or `path tests::test` for a unit test in
a source file). This check fails when a named file or test does not exist, so a renamed or deleted test cannot
leave a claim pointing at nothing. It also fails when the document names no tests at all."""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = re.compile(r"`([A-Za-z0-9_./-]+\.(?:rs|py|c))(?:::| tests::)([A-Za-z0-9_]+)`")
DEFINITION = {
    ".rs": r"\bfn\s+{name}\s*[(<]",
    ".py": r"\bdef\s+{name}\s*\(",
    ".c": r"\b{name}\s*\(",
}


def main(doc: Path) -> int:
    text = doc.read_text(encoding="utf-8")
    references = sorted(set(REFERENCE.findall(text)))
    if not references:
        print(f"{doc}: names no tests", file=sys.stderr)
        return 1
    missing = []
    for path, name in references:
        source = ROOT / path
        if not source.is_file():
            missing.append(f"{path}::{name} (no such file)")
            continue
        pattern = DEFINITION[source.suffix].format(name=re.escape(name))
        if not re.search(pattern, source.read_text(encoding="utf-8")):
            missing.append(f"{path}::{name} (no such test)")
    for m in missing:
        print(f"{doc.relative_to(ROOT)} names a missing test: {m}", file=sys.stderr)
    print(f"{doc.relative_to(ROOT)}: {len(references) - len(missing)} of {len(references)} named tests exist")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main(ROOT / "docs" / "SECURITY.md"))
