"""openscore: self-hosted model serving that runs Azure ML entry scripts unchanged.
Holds the `openscore` command (subcommands plugged in by components) and the pieces every component shares:
the low-level HTTP server, log lines, batched histogram writes. Imports nothing from the components.
"""

__version__ = "0.1.0"
