"""Teapot's REST APIs: app factory, auth and policy, errors, one package per API."""
