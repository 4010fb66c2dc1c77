"""Persistence behind small interfaces: metadata (SQL) and blobs (content-addressed)."""
