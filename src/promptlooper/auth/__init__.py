"""Users, passwords, JWTs, API keys and the request principal."""
