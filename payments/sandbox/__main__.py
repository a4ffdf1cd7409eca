"""``python -m payments.sandbox``: run the sandbox gateway until interrupted."""

from payments.sandbox.server import main

if __name__ == "__main__":
    main()
