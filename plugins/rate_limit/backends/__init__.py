"""Where a policy's decisions are made: ``redis`` (batched script calls, with an in-process
fallback) or ``memory`` (this process only), behind ``base.LimitBackend``."""
