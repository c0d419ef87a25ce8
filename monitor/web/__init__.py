"""The monitoring center's web page: live cameras, incident review, acknowledgement, access control.

Nothing is imported here (the ``web:`` section's model is ``monitor.config.web.WebConfig``); use
``monitor.web.app.create_app``, ``monitor.web.metrics.EngineMetrics``, ``monitor.web.server.WebServer``.
"""
