"""ep4's version: named in every result and audit record, so a replay knows what produced them."""

__version__ = "0.2.0"
