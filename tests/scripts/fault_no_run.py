"""Defines init() but no run(): the server must refuse to start (exit 3)."""


def init():
    pass
