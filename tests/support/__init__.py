"""Test support: throwaway real services and in-process servers."""
