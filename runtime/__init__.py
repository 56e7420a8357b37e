"""openscore.runtime: the scoring server (`openscore serve`) that runs Azure ML entry scripts unchanged.
May import `openscore` (shared pieces) and `openscore.accelerators`' public API; never the router or deployer.
"""
