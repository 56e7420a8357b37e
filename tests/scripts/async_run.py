import asyncio


def init():
    pass


async def run(raw_data):
    await asyncio.sleep(0.01)
    return {"async": True, "len": len(raw_data)}
