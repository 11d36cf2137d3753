"""orderhooks-manual: an example third-party orderhooks channel (see README.md)."""
__version__ = "0.1.0"
