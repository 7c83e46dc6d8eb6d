"""Bridges between a Vonix room and somewhere else, run as their own processes (issue 18).

`discord.py` is the Discord bridge (`vonix discord-bridge`); `health.py` is the server's side of
its health report (`PUT /api/bridges/discord/health`, shown in `GET /api/admin/stats`).
"""
