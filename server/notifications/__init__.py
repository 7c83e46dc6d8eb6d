"""Notifications: created after a message commits (mentions, replies, DMs), stored, pushed live on
`user:<id>` and by web push when the user has no live connection."""
