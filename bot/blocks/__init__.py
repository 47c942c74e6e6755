"""Pure Block Kit builders: values in, JSON-ready dicts out, Slack's size limits enforced."""
