"""Helpers the tests share: request builders, the emulator's API, a scripted HTTP server."""
