"""Vonix Network's Minecraft side (issue 18): the game servers' list and live status, game
accounts linked to members, and the plugins and bridges that speak for a game server."""
