"""Training, compiled modules -> trained weights: takes a model card with the loss and optimizer
cards (``cards``), gives a training step (``trainer``), a run folder that survives signals and kills
(``run``), checkpoints that carry their cards' texts (``checkpoint``, ``tensorfile``), the learning
rate schedule, progress, the loss plot, Hugging Face GPT-2 import and export (``hf``), and what the
``train``, ``sample``, ``import-hf`` and ``export-hf`` commands do (``commands``).
"""
