"""openscore scoring server: runs Azure ML entry scripts (init()/run()) unchanged."""

__version__ = "0.1.0"
