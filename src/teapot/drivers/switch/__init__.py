"""Top-of-rack switch drivers: move a host's switch port between VLANs."""
