"""Make the host's users and their DRF tokens; prints ``{"alice": token, "bob": token, "ops": token}``."""

import json

import django

django.setup()

from django.contrib.auth.models import User  # noqa: E402
from rest_framework.authtoken.models import Token  # noqa: E402

tokens = {}
for name, staff in (("alice", False), ("bob", False), ("ops", True)):
    user = User.objects.create_user(name, is_staff=staff, is_superuser=staff)
    tokens[name] = Token.objects.create(user=user).key
    tokens[name + "_pk"] = user.pk
print(json.dumps(tokens))
