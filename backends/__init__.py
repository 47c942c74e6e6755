"""tunebridge package."""
