"""Errors a user can cause. The CLI prints them as one line and exits with status 2."""


class PixgrepError(Exception):
    """A problem with the user's input or environment, worded for the user (one line)."""
