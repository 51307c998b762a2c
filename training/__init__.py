"""SAGE training: data, losses, the trainer, metrics; builds on sage_backend.model."""
