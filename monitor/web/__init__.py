"""The monitoring center's web page: live cameras, incident review, acknowledgement, access control.

Nothing is imported here, so ``monitor.config`` can import ``monitor.web.config.WebConfig`` without a
cycle; use ``monitor.web.app.create_app``, ``monitor.web.metrics.EngineMetrics``, ``monitor.web.server.WebServer``.
"""
