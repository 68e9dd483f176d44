"""Errors of bad input, naming the field at fault."""

from __future__ import annotations


class ValidationError(ValueError):
    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)
