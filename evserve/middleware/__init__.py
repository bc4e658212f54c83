"""Middleware that ships with evserve: body parsers, static files, CORS, access logging."""
