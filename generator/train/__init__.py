"""Training, compiled modules -> trained weights: takes a compiled model card with the loss and
optimizer cards, gives checkpoints, logs and plots (``trainer``, ``plot``).
"""
