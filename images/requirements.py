"""Print the requirements of pyproject.toml's extras, one a line, for `pip install -r`.

Lets an image install its dependencies from pyproject.toml alone, in a layer that is rebuilt only when
pyproject.toml changes, before the source is copied in.
    python3 requirements.py pyproject.toml operator [--exclude torch torchvision]
"""

from __future__ import annotations

import argparse
import re
import tomllib

SELF = re.compile(r"^crucible\[(?P<extras>[^\]]+)\]")


def requirements(project: dict, extras: list[str]) -> list[str]:
    """The core dependencies plus each extra's, following `crucible[other]` references."""
    optional = project.get("optional-dependencies", {})
    found: list[str] = list(project.get("dependencies", []))
    seen: set[str] = set()
    pending = list(extras)
    while pending:
        extra = pending.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for requirement in optional[extra]:
            match = SELF.match(requirement)
            if match:
                pending.extend(part.strip() for part in match["extras"].split(","))
            elif requirement not in found:
                found.append(requirement)
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("pyproject")
    parser.add_argument("extras", nargs="+")
    parser.add_argument("--exclude", nargs="*", default=[], help="Leave out these distributions.")
    args = parser.parse_args()
    with open(args.pyproject, "rb") as file:
        project = tomllib.load(file)["project"]
    extras = [part.strip() for arg in args.extras for part in arg.split(",")]  # "train,tune" too
    for requirement in requirements(project, extras):
        name = re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0]
        if name not in args.exclude:
            print(requirement)


if __name__ == "__main__":
    main()
