"""run(*args) is not a signature azmlinfsrv accepts: the server must refuse to start (exit 3)."""


def init():
    pass


def run(*args):
    return list(args)
