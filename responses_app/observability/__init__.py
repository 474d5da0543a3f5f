"""Logs and traces: request ids in every log line, one span per request, sample and tool call."""
