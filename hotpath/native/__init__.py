"""The compiled hot path: the per-request modules built with mypyc, loaded when they match.

``gatehouse native build`` compiles the modules listed in ``manifest.MODULES`` into a
directory of their own (``hotpath/native/lib`` unless ``GATEHOUSE_NATIVE_DIR`` says
otherwise), never next to the sources, so an edited ``.py`` is never shadowed by an old
``.so``. ``loader.install`` (run by ``hotpath/__init__.py``, before any of those modules
is imported) serves them from there only when the build's fingerprint matches every
source file of the three packages; otherwise everything runs interpreted.
"""
