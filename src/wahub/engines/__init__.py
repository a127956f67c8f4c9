"""Engines: adapters that speak to WhatsApp (sandbox, whatsmeow)."""
