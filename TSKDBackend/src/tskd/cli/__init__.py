"""The ``tskd`` command line: thin argument parsers over the package's public functions."""
