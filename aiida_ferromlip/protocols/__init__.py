"""YAML protocols: one file per stage, read through aiida-quantumespresso's ``ProtocolMixin``."""
