"""runtime.detection package."""
