"""Built-in plugins: one module (or package, when it has backends) per plugin."""
