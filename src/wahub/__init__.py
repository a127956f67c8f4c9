"""wa-hub: a self-hosted WhatsApp gateway with a durable outbox and signed webhooks."""

__version__ = "0.1.0"
