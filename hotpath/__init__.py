"""The per-request path and what it needs at startup."""

from hotpath.native.loader import install as _install_native

# Before any submodule: a matching compiled build must serve every module it holds.
_install_native()
