"""The multi-team gateway: client identity and keys, limits, usage and pricing, metrics, retention."""
