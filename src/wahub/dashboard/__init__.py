"""The operator dashboard: Jinja2 templates and htmx served by wa-hub itself at ``/dashboard``."""
