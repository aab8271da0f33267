"""`python -m aivm`: a no-op `aivm build` is served from its record (aivm/fastpath.py)
before click and the rest of aivm are imported; everything else runs the click tree."""

import sys

from aivm import fastpath

if not fastpath.serve(sys.argv[1:]):
    from aivm.cli.main import main

    main()
