"""Job plumbing shared by every domain: ownership of jobs, status for their owners, metrics."""
