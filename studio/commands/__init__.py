"""One module per ``studio`` sub-command: ``add_parser(subparsers)`` registers it, ``run(args)`` executes it."""
