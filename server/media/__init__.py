"""Uploaded media (avatars): processing, storage under MEDIA_DIR, and the URLs clients load."""
