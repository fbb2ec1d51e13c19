"""Slack entry points: the Bolt app and its listeners, one module per feature."""
