"""Compilation, checked card -> Python module: takes a checked card, gives module source.

``lower`` (with ``layout``, ``inline``, ``lower_expr``, ``lower_steps``) turns the card IR into the
whole-array core IR of ``core``; ``ad`` derives its backward from the VJP table; ``memory`` plans
buffers; ``causal`` finds what a causal mask lets run in row blocks; ``npcode`` prints each primitive
as NumPy; ``emit`` makes the module's parts, with
``wrappers`` for training and inference cards, and ``template`` (the only importer of jinja2 here)
lays them out from ``templates/``;
``gradcheck`` loads a module and checks its backward by finite differences.
"""
