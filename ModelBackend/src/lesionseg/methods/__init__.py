"""Registered methods; each module registers one method on import (see lesionseg.registry)."""
