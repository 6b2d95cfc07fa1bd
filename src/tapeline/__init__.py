"""Tapeline: an on-premises recorder for business calls and WhatsApp conversations."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tapeline")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+source"

__all__ = ["__version__"]
