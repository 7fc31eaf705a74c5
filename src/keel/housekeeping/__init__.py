"""Jobs the worker runs for the service itself, belonging to no domain (registered in keel.worker).

Job machinery every domain uses (who owns a job, its status, the worker's metrics, purging in
batches) is keel.jobs.
"""
