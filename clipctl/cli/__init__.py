"""Command-line layer: argument parsing, rich output and exit codes. No model or data logic lives here."""
