"""Built-in plugins: one module (or package, when it has backends) per plugin."""

import hotpath  # noqa: F401  first: it installs the compiled modules (hotpath/native) before ours load
