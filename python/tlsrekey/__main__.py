"""python -m tlsrekey: the interactive TLS console (see tlsrekey.console)."""
import sys

from .console import main

if __name__ == "__main__":
    sys.exit(main())
