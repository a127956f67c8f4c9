"""The ``whatsmeow`` engine: a WhatsApp linked device through neonize, one worker process per instance."""
