"""The ``cloud`` engine: Meta's WhatsApp Cloud API (Graph API over HTTPS, webhooks in)."""
