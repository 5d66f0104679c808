"""The storefront API process: the latest page per session over HTTP, and a live preview page."""
