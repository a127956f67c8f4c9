"""What the API and the dashboard share at the HTTP edge: the API key check, the failed-key brake, presenters."""
