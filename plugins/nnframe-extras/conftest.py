"""Test the nnframe_extras of this checkout, through its installed entry point.

`make` installs the package as a copy (and reinstalls it when these files change). Putting
this directory first on sys.path makes an installed copy older than the checkout harmless:
the entry point names the module, and the module found is the one here.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)
