"""The package's version, in one place (read by the build and by ``get_provider_info``)."""

__version__ = "0.1.0"
