"""Data layer: table definitions, the instrumented query layer, migrations and maintenance."""
