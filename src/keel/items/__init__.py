"""Items owned by users: the worked example of a domain (copy this folder to add your own)."""
