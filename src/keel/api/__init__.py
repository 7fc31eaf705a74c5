"""HTTP edge: dependencies, problem responses, health, versioned routers."""
