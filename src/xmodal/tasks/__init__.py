"""Recipes other than the CLIP dual encoder, chosen by a recipe's top-level ``task:`` key.

``xmodal train CONFIG`` and ``xmodal eval CONFIG ...`` read ``task`` from the YAML (default ``clip``, the
dual-encoder trainer of :mod:`xmodal.train`). For any other value ``T``, module ``xmodal.tasks.T`` handles
the command: it defines ``cmd_train(args) -> int`` and ``cmd_eval(args) -> int``, taking the parsed
arguments of ``xmodal train`` / ``xmodal eval`` (``args.config``, ``args.set``, ``args.out``, ...).
"""
