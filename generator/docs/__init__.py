"""Documents, checked card -> text for people: takes checked cards, gives pages.

``latex`` (Markdown with math), ``texbox`` (LaTeX algorithm boxes), ``book`` (the HTML card book,
from ``templates/`` and ``assets/``), ``highlight`` (the Pygments card lexer and TextMate grammar),
``derived`` (the backward and saved activations as text) and ``report`` (parameter counts, formats).
"""
