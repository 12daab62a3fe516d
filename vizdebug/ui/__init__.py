"""Text output for the command line (rich)."""
