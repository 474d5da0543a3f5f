"""The performance benchmark (``make bench``): what the gateway adds over the upstream alone and over LiteLLM."""
