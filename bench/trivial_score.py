"""The trivial entry script of the scoring benchmark: the framework's cost is all there is to measure."""
import json


def init():
    pass


def run(raw_data):
    data = json.loads(raw_data)
    return {"result": data["data"][0] * 2}
