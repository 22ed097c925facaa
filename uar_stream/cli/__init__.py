"""The ``uar-stream`` command line, one module per command."""
