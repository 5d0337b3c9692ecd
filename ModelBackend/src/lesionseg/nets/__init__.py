"""Network architectures (dimension-generic)."""
