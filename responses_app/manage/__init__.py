"""The management REST API (Django REST framework): providers, routes, client keys, usage, responses.

Include ``responses_app.manage.urls`` at any prefix (the site serves it under ``manage/v1/``).
Every write goes through the services the admin uses; see docs/management.md.
"""
