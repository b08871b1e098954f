"""fwdproxy: a forward proxy for clients, on trio and h11."""

__version__ = "0.1.0"
