"""``python -m lesionseg`` runs the command line."""
from .cli import main
import sys

sys.exit(main())
