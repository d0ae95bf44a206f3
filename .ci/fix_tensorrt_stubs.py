"""Make NVIDIA's generated tensorrt-stubs parse (every version 10.8-10.13 has the same two slips).

1. A parameter named ``in`` (a keyword) is renamed ``in_``.
2. A parameter without a default after one with a default gets ``= ...``.
Nothing else changes; the script exits non-zero if the file still does not parse.
"""

import ast
import re
import sys
from pathlib import Path


def fix_def(line: str) -> str:
    match = re.match(r"^(\s*def \w+\()(.*)(\)\s*->.*)$", line)
    if not match:
        return line
    params, seen_default = [], False
    for param in re.split(r",\s*(?![^\[]*\])", match.group(2)):
        param = re.sub(r"^in:", "in_:", param.strip())
        if "=" in param:
            seen_default = True
        elif seen_default and ":" in param and not param.startswith("*"):
            param += " = ..."
        params.append(param)
    return match.group(1) + ", ".join(params) + match.group(3)


def main(path: str) -> int:
    stub = Path(path)
    text = "\n".join(fix_def(line) for line in stub.read_text().splitlines()) + "\n"
    ast.parse(text)  # raises SyntaxError if a new kind of slip appears
    stub.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
