"""Serving side of the project: the HTTP API over the trained models (see `service.app`)."""
