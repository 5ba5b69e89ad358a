"""Operating the service: the health report (retained on `{prefix}/health`) and Prometheus metrics.

Both read the service through the narrow `ServiceView` of `ops.view`, never the `Service` itself.
"""
