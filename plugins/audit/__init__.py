"""``audit``: which audit events a route emits.

Refusals (``auth_failure``, ``forbidden``, ``rate_limited``) carry a ``Refusal`` from the
plugin that refused; this plugin turns the ones its route asks for into events, and on a
sensitive route records every request, with a digest of the body but never the body.
Delivery (batches to an HTTP sink, a JSON log) is ``observability.audit``.
"""

from plugins.audit.plugin import AuditPlugin

__all__ = ["AuditPlugin"]
