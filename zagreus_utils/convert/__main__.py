"""``python -m zagreus_utils.convert nanotron-to-hf|hf-to-nanotron ...``"""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
