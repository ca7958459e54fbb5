"""Declarative searches, one YAML file per search: search_spaces/<lab>/<search>.yaml."""
