"""Exceptions for user errors. The CLI prints these as one line and exits with code 2."""

from __future__ import annotations


class FacedegError(Exception):
    """Base class: a user-facing error whose message is one complete line."""


class RecipeError(FacedegError):
    """A recipe file or tree is invalid. The message names the file, the key path and the reason."""


class ImageError(FacedegError):
    """An input image cannot be read or decoded. The message names the file and the reason."""


class BuildError(FacedegError):
    """A dataset build cannot proceed (mismatching output, no usable input, bad option)."""


class MissingExtraError(FacedegError):
    """A feature needs an optional extra that is not installed; the message names the extra."""
