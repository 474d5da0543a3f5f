"""Writes and flows: every front end (HTTP, WebSocket, admin, tasks, reaper) calls these."""
