"""python -m app.relay: the outbox relay process (app/relay/main.py)."""
import sys

from .main import main

if __name__ == "__main__":
    sys.exit(main())
