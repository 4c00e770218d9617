"""goldmine: from raw data to a served large model, and whether it pays."""
__version__ = "0.1.0"
