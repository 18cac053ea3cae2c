"""Per-service circuit breakers and retries around upstream calls."""
