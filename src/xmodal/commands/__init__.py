"""CLI plug-ins: every module in this package adds commands to ``xmodal`` without editing ``cli.py``.

A module here may define

* ``register(parsers: xmodal.cli.Parsers) -> None``: add sub-commands, e.g.
  ``parsers.root.add_parser("audit", ...)`` (``xmodal audit ...``) or
  ``parsers.data.add_parser("shard", ...)`` (``xmodal data shard ...``); each sets ``func=handler``
  with ``handler(args) -> int``;
* ``EVAL_MODES: dict[str, Callable[[], argparse.ArgumentParser]]``: extra ``xmodal eval MODE ...`` forms
  (like ``xmodal eval captions``), each a builder of a parser whose defaults set ``func``.

Handlers raise :class:`~xmodal.errors.XmodalError` for bad input (one line on stderr, exit code 2).
"""
