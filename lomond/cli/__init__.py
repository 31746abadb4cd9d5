"""The command line: ``lomond URL`` (or ``python -m lomond``) and ``--demo``.

Built on the public API only. :func:`lomond.cli.main.main` is the console script's
entry point; the demo's echo server (:mod:`lomond.cli.demo_server`) can be imported
without loading the command line.
"""
