"""HTTP routes, one module per resource; `all_routes` assembles them for the app factory."""
