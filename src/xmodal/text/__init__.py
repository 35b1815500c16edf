"""Text utilities shared by data, training and evaluation: caption perturbations."""
