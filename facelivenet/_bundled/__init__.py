"""Package data: the bundled default model and the parity faces (symbolic links to
``models/`` and ``data/parity-faces`` in a checkout; real files in a built wheel)."""
