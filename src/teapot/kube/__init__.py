"""Upstream Kubernetes as Teapot uses it: the pinned releases, built from the Go module proxy."""
