"""``python -m lesionseg.cli`` runs the command line (what the Slicer panels start in the background)."""
import sys

from . import main

sys.exit(main())
