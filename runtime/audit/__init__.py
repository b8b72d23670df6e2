"""runtime.audit package."""
