"""`python -m fwdproxy`: the same as the `fwdproxy` command."""

from fwdproxy.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
