"""One module per sub-command. Each exports ``add_arguments(parser)`` and ``main(args) -> int``."""
