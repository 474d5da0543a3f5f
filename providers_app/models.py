"""Providers and routing rules kept in the database (edited in the admin; they come first)."""

from __future__ import annotations

from django.db import models


class Provider(models.Model):
    name = models.SlugField(max_length=100, unique=True)
    adapter = models.CharField(
        max_length=300,
        help_text="A built-in family (openai, openai_chat, anthropic, gemini, ollama, mock) or a dotted path.",
    )
    base_url = models.CharField(max_length=500, blank=True)
    api_key_env = models.CharField(
        max_length=200, blank=True, help_text="Read the key from this environment variable instead."
    )
    api_key_encrypted = models.TextField(blank=True, editable=False)
    api_key_last4 = models.CharField(max_length=4, blank=True, editable=False)
    api_key_destination = models.CharField(
        max_length=900,
        blank=True,
        editable=False,
        help_text="The adapter and base URL the stored key was entered for: it is sent nowhere else.",
    )
    headers = models.JSONField(default=dict, blank=True)
    connect_timeout = models.FloatField(default=10.0)
    first_byte_timeout = models.FloatField(default=120.0)
    idle_timeout = models.FloatField(default=120.0)
    max_retries = models.PositiveSmallIntegerField(default=2)
    options = models.JSONField(default=dict, blank=True)
    enabled = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def key_destination(self) -> str:
        """Where this row sends its key: the adapter and the base URL, as entered."""
        return key_destination(self.adapter, self.base_url)

    def set_api_key(self, key: str) -> None:
        """Keep ``key`` encrypted (only its last four characters in clear), bound to the current
        destination (:meth:`key_destination`); an empty key clears it."""
        from providers_app.secrets import encrypt

        self.api_key_encrypted = encrypt(key) if key else ""
        self.api_key_last4 = key[-4:] if key else ""
        self.api_key_destination = self.key_destination() if key else ""


def key_destination(adapter: str, base_url: str) -> str:
    return f"{(adapter or '').strip()} {(base_url or '').strip()}"


class RoutingRule(models.Model):
    pattern = models.CharField(
        max_length=200, help_text="Shell-style glob on the requested model name, e.g. claude-*."
    )
    provider = models.ForeignKey(
        Provider, on_delete=models.CASCADE, related_name="rules", null=True, blank=True
    )
    provider_name = models.CharField(
        max_length=100,
        blank=True,
        help_text="A provider defined outside the database (environment or config file).",
    )
    upstream_model = models.CharField(
        max_length=200, blank=True, help_text="Rewrite the model name sent upstream."
    )
    fallbacks = models.JSONField(
        default=list,
        blank=True,
        help_text='Tried in order when the provider fails before its first byte: [{"provider": "azure", "model": "gpt-4o"}] (model optional).',
    )
    order = models.IntegerField(default=100)
    enabled = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["order", "id"]

    def __str__(self) -> str:
        return f"{self.pattern} → {self.target_name}"

    @property
    def target_name(self) -> str:
        return self.provider.name if self.provider_id else self.provider_name
