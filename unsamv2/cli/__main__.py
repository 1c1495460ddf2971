"""``python -m unsamv2.cli`` (what ``torchrun -m unsamv2.cli`` runs in every process)."""
import sys

from unsamv2.cli import main

sys.exit(main())
