"""init() takes far longer than any test: the replica runs but never becomes ready."""
import time


def init():
    time.sleep(600)


def run(raw_data):
    return {}
