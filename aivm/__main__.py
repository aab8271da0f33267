"""`python -m aivm`: a no-op `aivm build` is served from its record (aivm/fastpath.py)
before click and the rest of aivm are imported; everything else runs the click tree.
`main` is also a console-script entry point (pyproject `aivm = "aivm.__main__:main"`)."""

import sys

from aivm import fastpath


def main() -> None:
    if not fastpath.serve(sys.argv[1:]):
        from aivm.cli.main import main as cli_main

        cli_main()


if __name__ == "__main__":
    main()
