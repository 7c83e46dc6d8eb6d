"""Accounts and security: passwords, tokens, sessions, 2FA, OAuth, lockout, reset, RBAC, bots."""
