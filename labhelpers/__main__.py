"""`python -m labhelpers` is the `dora-lab` command."""

from labhelpers.cli import main

if __name__ == "__main__":
    main()
