"""K2's database backend: Django's PostgreSQL backend with a cheaper check of pooled connections
(see `k2.db.base`)."""
