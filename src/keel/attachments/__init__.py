"""Files attached to items, stored on S3-compatible storage (docs/files.md)."""
