"""Southbound drivers, each a small Protocol with implementations chosen by configuration."""
