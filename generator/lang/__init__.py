"""The card language, text <-> IR: takes card text (or rendered pseudocode), gives a checked card.

``parse`` (the only importer of lark) turns text into the IR of ``ir``; ``check`` (with its rule
modules ``check_expr`` and ``check_call``) gives every value a type and a symbolic shape from
``types`` and ``shapes``, or raises ``errors.CardError`` at the card's line and column; ``render``
prints the IR back as card text and pseudocode, the inverse of ``parse``.
"""
