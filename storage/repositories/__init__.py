"""Repositories: the only modules that build queries."""
