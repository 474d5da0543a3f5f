"""Bind each stored provider key to the adapter and base URL it was entered for.

A stored key is never sent to another destination until it is entered again (issue 16): rows that
hold a key now are bound to where they send it today.
"""

from django.db import migrations, models


def bind_existing(apps, schema_editor):
    Provider = apps.get_model("providers_app", "Provider")
    for row in Provider.objects.exclude(api_key_encrypted=""):
        row.api_key_destination = f"{(row.adapter or '').strip()} {(row.base_url or '').strip()}"
        row.save(update_fields=["api_key_destination"])


class Migration(migrations.Migration):
    dependencies = [("providers_app", "0003_reencrypt_provider_keys")]

    operations = [
        migrations.AddField(
            model_name="provider",
            name="api_key_destination",
            field=models.CharField(
                blank=True,
                editable=False,
                help_text="The adapter and base URL the stored key was entered for: it is sent nowhere else.",
                max_length=900,
            ),
        ),
        migrations.RunPython(bind_existing, migrations.RunPython.noop),
    ]
