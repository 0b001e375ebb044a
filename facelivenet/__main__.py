"""``python -m facelivenet`` runs the command-line interface."""

from facelivenet.cli import main

if __name__ == "__main__":
    main()
