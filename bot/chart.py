"""The loss chart the Slack notifier uploads; drawn by `tunebridge.loss_chart` (the console
notifier and the HTTP summary draw the same one)."""

from tunebridge.loss_chart import loss_chart

__all__ = ["loss_chart"]
