"""ctrflow: the command-line entry point and the bundled demo."""
