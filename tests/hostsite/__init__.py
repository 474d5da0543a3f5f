"""A second, minimal Django project that plugs the OpenResponses apps in (the way a host site would)."""
