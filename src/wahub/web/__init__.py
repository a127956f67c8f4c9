"""The one web application: the API and the dashboard mounted side by side behind one guard."""
