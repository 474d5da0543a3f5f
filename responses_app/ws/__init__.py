"""Kept so ``responses_app.ws.routing`` (the path earlier docs gave host sites) still imports."""
