"""Authentication: argon2id passwords, JWT access tokens, sessions with rotating refresh tokens."""
