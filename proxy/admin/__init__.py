"""The admin API (invalidations, purge, health, stats, metrics, reload) and its Prometheus text writer."""

from proxy.admin.api import AdminError, AdminOps, Invalidation, make_admin_app

__all__ = ["AdminError", "AdminOps", "Invalidation", "make_admin_app"]
