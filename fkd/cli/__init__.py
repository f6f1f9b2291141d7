"""The ``fkd`` command line: one module per subcommand, each thin over the library."""
